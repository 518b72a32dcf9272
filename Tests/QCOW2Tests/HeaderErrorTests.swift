import QCOW2
import QCOW2TestSupport
import Testing

/// Errors for files too short to hold a header name the file's size and the bytes needed.
@Suite("Short headers")
struct HeaderErrorTests {
    /// The first `count` bytes of the clean crafted image, with `version` written at offset 4.
    static func prefix(_ count: Int, version: UInt32) -> [UInt8] {
        var bytes = CraftedImages.clean.bytes
        ImageBuilder.patch(&bytes, at: 4, value: UInt64(version), width: 4)
        return Array(bytes.prefix(count))
    }

    static func error(_ bytes: [UInt8]) -> QCOW2Error? {
        do {
            _ = try QCOW2Image(source: MemoryImageSource(bytes: bytes))
            return nil
        } catch {
            return error
        }
    }

    @Test("a 40-byte version 3 file: the message gives the file's size and the 104 bytes a v3 header needs")
    func version3() throws {
        let e = try #require(Self.error(Self.prefix(40, version: 3)))
        #expect(e.kind == .truncated && e.structure == "header" && e.offset == 0)
        #expect(e.message == "file is 40 bytes, a version 3 header needs 104", "\(e)")
    }

    @Test("a 50-byte version 2 file: parsed as QEMU reads it, the rest as zeros, with H22")
    func version2() throws {
        #expect(Self.error(Self.prefix(50, version: 2)) == nil)
        let image = try QCOW2Image(source: MemoryImageSource(bytes: Self.prefix(50, version: 2)))
        #expect(image.header.version == 2 && image.header.snapshotsOffset == 0)
        #expect(ImageValidator.findings(image).contains { $0.code == "H22" && $0.offset == 50 })
    }

    @Test("a 5-byte file: too short even for magic and version")
    func tiny() throws {
        let e = try #require(Self.error(Array(CraftedImages.clean.bytes.prefix(5))))
        #expect(e.kind == .truncated)
        #expect(e.message == "file is 5 bytes, a qcow2 header needs at least 72", "\(e)")
    }

    @Test("exactly the bytes needed is enough to parse", arguments: [(UInt32(2), 72), (UInt32(3), 104)])
    func exactSize(version: UInt32, size: Int) {
        #expect(Self.error(Self.prefix(size, version: version)) == nil)
    }
}
