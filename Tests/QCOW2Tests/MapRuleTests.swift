import Foundation
import QCOW2
import QCOW2TestSupport
import Testing

/// Every cluster-mapping rule (M) is broken by an image qemu-img made and one entry patched, and the
/// map still covers the whole disk, in order, with the finding naming the entry.
@Suite("Cluster-mapping rules", .enabled(if: QemuImageFactory.toolsAvailable, "needs qemu-img"))
struct MapRuleTests {
    /// One rule, the image to start from and the patch that breaks it.
    struct Case: Sendable, CustomTestStringConvertible {
        var code: String
        /// `qemu-img create -o` options.
        var options: [String]
        /// What to patch, given the image's L1 table offset and its first L2 table's offset.
        var patch: @Sendable (_ path: String, _ l1: UInt64, _ l2: UInt64) throws -> Void
        var testDescription: String { code }
    }

    static let copied: UInt64 = 1 << 63

    static let cases: [Case] = [
        Case(code: "M1", options: []) { p, l1, l2 in try ImagePatch.poke64(p, l1, copied | (l2 + 0x200)) },
        Case(code: "M2", options: []) { p, l1, _ in try ImagePatch.poke64(p, l1, copied | 0x100_0000) },
        Case(code: "M3", options: []) { p, l1, l2 in try ImagePatch.poke64(p, l1, copied | (1 << 62) | l2) },
        Case(code: "M4", options: []) { p, _, l2 in try ImagePatch.poke64(p, l2 + 8, copied | 0x60200) },
        Case(code: "M5", options: []) { p, _, l2 in try ImagePatch.poke64(p, l2 + 24, copied | 0x100_0000) },
        Case(code: "M6", options: []) { p, _, l2 in try ImagePatch.poke64(p, l2 + 8, copied | 0x60000 | 0x2) },
        // Compressed, 256 sectors from 0x70000: ends at 0x90000, past the 0x80000-byte file.
        Case(code: "M7", options: []) { p, _, l2 in try ImagePatch.poke64(p, l2 + 32, (1 << 62) | (0xff << 54) | 0x70000) },
        Case(code: "M8", options: ["compat=0.10"]) { p, _, l2 in try ImagePatch.poke64(p, l2 + 8, copied | 0x60000 | 1) },
        Case(code: "M9", options: ["extended_l2=on"]) { p, _, l2 in try ImagePatch.poke64(p, l2 + 8, 0x0000_0001_0000_0001) },
        Case(code: "M10", options: ["data_file=t.data"]) { p, _, l2 in try ImagePatch.poke64(p, l2 + 8, (1 << 62) | 0x10000) },
        Case(code: "M11", options: ["data_file=t.data"]) { p, _, l2 in try ImagePatch.poke64(p, l2 + 8, copied | 0x30000) },
    ]

    @Test("the rule is found, the map still covers the disk", arguments: cases)
    func ruleIsBroken(_ c: Case) throws {
        let factory = try QemuImageFactory()
        defer { factory.removeDirectory() }
        let path = try factory.create("t.qcow2", size: 1 << 20, options: c.options)
        try factory.qemuIO("t.qcow2", ["write -P 1 0 192k"])
        let l1 = try ImagePatch.peek64(path, 40)
        let l2 = try ImagePatch.peek64(path, l1) & 0x00ff_ffff_ffff_fe00
        try #require(l2 != 0)
        try c.patch(path, l1, l2)
        let image = try QCOW2Image(source: FileImageSource(path: path))
        let map = GuestMap(layers: [MapLayer(qcow2: image)])
        let page = try map.page(from: 0, to: map.virtualSize, limit: 10_000)
        let findings = page.issues.map { MapChecks.finding($0) }
        let hits = findings.filter { $0.code == c.code }
        #expect(!hits.isEmpty, "\(c.code): \(findings.map(\.code))")
        for f in hits {
            let rule = try #require(Rule.withCode(c.code))
            #expect(f.severity == rule.severity && f.offset != nil && f.value != nil && !f.message.isEmpty, "\(f)")
            #expect(f.structure.hasPrefix("l1_table[") || f.structure.hasPrefix("l2_table["), "\(f.structure)")
        }
        #expect(page.next == nil)
        var at: UInt64 = 0
        for e in page.extents {
            #expect(e.start == at && e.length > 0)
            at = e.end
        }
        #expect(at == map.virtualSize)
    }
}
