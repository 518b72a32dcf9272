@testable import QemuCompat
import Testing

/// The Python formatting qcow2.py's output depends on, checked against Python's documented results.
struct PythonFormattingTests {
    @Test func powersOfTwoPrintLikePythonInts() throws {
        #expect(PythonInt.powerOfTwo(0) == "1")
        #expect(PythonInt.powerOfTwo(63) == "9223372036854775808")
        #expect(PythonInt.powerOfTwo(64) == "18446744073709551616")
        #expect(PythonInt.powerOfTwo(100) == "1267650600228229401496703205376")
        // str(1 << n) has floor(n * log10(2)) + 1 digits; Python 3.11 refuses more than 4300.
        let log2 = 0.30102999566398119521
        for n: UInt64 in [1000, 14282, 14283, 14284, 14285, 14286, 14300, 20000] {
            let digits = Int((Double(n) * log2).rounded(.down)) + 1
            let s = PythonInt.powerOfTwo(n)
            #expect((s == nil) == (digits > PythonInt.maxDigits), "\(n)")
            if let s {
                #expect(s.count == digits, "\(n)")
                #expect(s.last.map { "2468".contains($0) } == true, "\(n)")
            }
        }
        // 2^1000 mod 10^9 = 668069376 (last nine digits).
        #expect(PythonInt.powerOfTwo(1000)?.hasSuffix("668069376") == true)
    }

    @Test func stringsQuoteLikeJSONDumps() {
        #expect(PythonJSONStream.quote("bitmap-1") == "\"bitmap-1\"")
        #expect(PythonJSONStream.quote("'a\"b\\c'") == "\"'a\\\"b\\\\c'\"")
        #expect(PythonJSONStream.quote("\t\n\r\u{0b}\u{0c}\u{08}") == "\"\\t\\n\\r\\u000b\\f\\b\"")
        #expect(PythonJSONStream.quote("\u{7f}\u{e9}\u{1F600}") == "\"\\u007f\\u00e9\\ud83d\\ude00\"")
    }

    @Test func textHelpersFollowPython() {
        #expect(PythonFormat.pad("magic", 8) == "magic   ")
        #expect(PythonFormat.pad("a-long-name", 4) == "a-long-name")
        #expect(PythonFormat.bitList(0) == "[]")
        #expect(PythonFormat.bitList(0b1001) == "[0, 3]")
        #expect(PythonFormat.bitmapFlags(0) == "0x0 ([])")
        #expect(PythonFormat.bitmapFlags(0x3) == "0x3 (['in-use', 'auto'])")
        #expect(PythonFormat.bitmapFlags(0x10) == "0x10 (['bit-4'])")
        #expect(PythonFormat.dataString(Array("qcow2".utf8)) == "'qcow2'")
        #expect(PythonFormat.dataString([0x61, 0x0b, 0x0c]) == "'a\u{0b}\u{0c}'")
        #expect(PythonFormat.dataString([0x61, 0x00]) == "<binary>")
        #expect(PythonFormat.dataString([0x7f]) == "<binary>")
        #expect(PythonFormat.backslashReplace([0x62, 0xc3, 0xbc]) == "b\\xc3\\xbc")
    }
}
