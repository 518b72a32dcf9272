import Testing

@Test func placeholderQCOW2APITests() { #expect(Bool(true)) }
