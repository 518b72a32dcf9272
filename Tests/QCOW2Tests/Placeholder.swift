import Testing

@Test func placeholderQCOW2Tests() { #expect(Bool(true)) }
