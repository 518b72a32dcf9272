import QCOW2API
import Testing

/// The JSON reader of the remote CLI: what ``JSONWriter`` prints reads back to the same value (so the
/// CLI prints the same bytes), and hostile text is refused with the offset, never trapped on.
struct JSONParserTests {
    static let sample: JSONValue = .obj([
        "name": .string("sp ace/é \"q\" \\ \u{1}\u{7f}\u{1F600}"), "max": .uint(UInt64.max), "neg": .int(Int64.min),
        "zero": .uint(0), "ratio": .double(0.125), "whole": .double(3), "tiny": .double(1e-7), "big": .double(1.5e300),
        "ok": .bool(true), "no": .bool(false), "nothing": .null, "empty": .array([]), "emptyObject": .object([]),
        "nested": .array([.obj(["b": .uint(2), "a": .uint(1)]), .array([.array([.null])])]),
    ])

    @Test func whatTheWriterPrintsReadsBackToTheSameValue() throws {
        for style in [JSONWriter.Style.compact, .pretty(indent: 2), .python] {
            let text = JSONWriter(style: style).bytes(Self.sample)
            let back = try JSONParser.parse(text)
            #expect(back == Self.sample, "style \(style)")
            #expect(JSONWriter(style: style).bytes(back) == text)
        }
    }

    @Test func escapesAndSurrogatesDecode() throws {
        let v = try JSONParser.parse(Array(#"["\u00e9\ud83d\ude00\n\t\/", "\ud800x", -0, 1E2]"#.utf8))
        #expect(v == .array([.string("é😀\n\t/"), .string("\u{FFFD}x"), .uint(0), .double(100)]))
    }

    @Test(arguments: [
        ("", 0), ("{", 1), ("[1,]", 3), ("{\"a\" 1}", 5), ("tru", 3), ("01", 1), ("1.", 2), ("1e", 2), ("\"a\u{1}\"", 2),
        ("\"\\x\"", 2), ("[1] 2", 4), ("18446744073709551616e999", 0), ("\"\\u12g4\"", 5), ("-", 1),
    ])
    func malformedTextIsRefusedWithItsOffset(text: String, offset: Int) {
        #expect(throws: JSONParser.Failure.self, "\(text)") { try JSONParser.parse(Array(text.utf8)) }
        do {
            _ = try JSONParser.parse(Array(text.utf8))
        } catch {
            #expect(error.offset == offset, "\(text): \(error)")
        }
    }

    @Test func nestingIsBounded() throws {
        let deep = String(repeating: "[", count: JSONParser.maximumDepth) + String(repeating: "]", count: JSONParser.maximumDepth)
        _ = try JSONParser.parse(Array(deep.utf8))
        let deeper = String(repeating: "[", count: 100_000)
        #expect(throws: JSONParser.Failure.self) { try JSONParser.parse(Array(deeper.utf8)) }
    }

    @Test func integersBeyond64BitsReadAsDoubles() throws {
        #expect(try JSONParser.parse(Array("18446744073709551616".utf8)) == .double(18446744073709551616))
        #expect(try JSONParser.parse(Array("-9223372036854775809".utf8)) == .double(-9223372036854775809))
    }
}
