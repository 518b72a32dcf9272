import Foundation
import QCOW2
import QCOW2TestSupport
import Testing

/// For every real image, every field that `qemu-img info --output=json` prints agrees with the parser.
@Suite("Agreement with qemu-img info")
struct QemuAgreementTests {
    @Test("every qemu-img info field agrees", arguments: StandardImages.Scenario.allCases)
    func agrees(_ scenario: StandardImages.Scenario) throws {
        let img = try RealImages.image(scenario)
        let info = try RealImages.factory().infoJSON(img.path)
        let image = try QCOW2Image(path: img.path)
        let h = image.header
        #expect(info["virtual-size"] as? UInt64 == h.size)
        #expect(info["cluster-size"] as? UInt64 == h.clusterSize)
        #expect(info["dirty-flag"] as? Bool == (h.incompatibleFeatures & Header.dirtyBit != 0))
        #expect((info["encrypted"] as? Bool ?? false) == (h.cryptMethod != 0))
        #expect(info["backing-filename"] as? String == image.backingFile?.utf8)
        #expect(info["backing-filename-format"] as? String == image.backingFormat?.utf8)
        let spec = try #require((info["format-specific"] as? [String: Any])?["data"] as? [String: Any])
        #expect(spec["compat"] as? String == h.compat)
        #expect(spec["compression-type"] as? String == h.compressionTypeName)
        #expect(spec["refcount-bits"] as? UInt64 == h.refcountBits)
        if h.version >= 3 {
            #expect(spec["lazy-refcounts"] as? Bool == (h.compatibleFeatures & Header.lazyRefcountsBit != 0))
            #expect(spec["corrupt"] as? Bool == (h.incompatibleFeatures & Header.corruptBit != 0))
            #expect(spec["extended-l2"] as? Bool == (h.incompatibleFeatures & Header.extendedL2Bit != 0))
        }
        #expect(spec["data-file"] as? String == image.dataFile?.utf8)
        if image.dataFile != nil {
            #expect(spec["data-file-raw"] as? Bool == (h.autoclearFeatures & Header.rawExternalDataBit != 0))
        }
        if let enc = spec["encrypt"] as? [String: Any] {
            #expect(enc["format"] as? String == (h.cryptMethod == 2 ? "luks" : "aes"))
        }
        // Bitmaps: qemu-img lists them (directory order) only when the extension is trusted.
        let theirs = (spec["bitmaps"] as? [[String: Any]]) ?? []
        let ours = h.bitmapsConsistentBit ? image.bitmaps : []
        #expect(theirs.count == ours.count)
        for (t, o) in zip(theirs, ours) {
            #expect(t["name"] as? String == o.name.utf8)
            #expect(t["granularity"] as? UInt64 == o.granularity)
            #expect(t["flags"] as? [String] == o.flagNames)
        }
        // Snapshots.
        let snaps = (info["snapshots"] as? [[String: Any]]) ?? []
        let table = image.snapshots()
        #expect(snaps.count == table.entries.count)
        let snapshotFindings = ImageValidator.snapshotFindings(image, table: table)
        #expect(table.issues.isEmpty && snapshotFindings.isEmpty, "\(table.issues) \(snapshotFindings)")
        for (t, o) in zip(snaps, table.entries) {
            #expect(t["id"] as? String == o.id.utf8)
            #expect(t["name"] as? String == o.name.utf8)
            #expect(t["vm-state-size"] as? UInt64 == o.vmStateSize)
            #expect(t["date-sec"] as? UInt64 == UInt64(o.dateSec))
            #expect(t["date-nsec"] as? UInt64 == UInt64(o.dateNsec))
            #expect(t["vm-clock-sec"] as? UInt64 == o.vmClockNsec / 1_000_000_000)
            #expect(t["vm-clock-nsec"] as? UInt64 == o.vmClockNsec % 1_000_000_000)
            #expect(t["icount"] as? Int64 == o.icountSigned)
        }
    }

    @Test("real images carry no error findings (a crash leaves only what QEMU itself reports)",
        arguments: StandardImages.Scenario.allCases)
    func realImagesAreClean(_ scenario: StandardImages.Scenario) throws {
        let img = try RealImages.image(scenario)
        let image = try QCOW2Image(path: img.path)
        let findings = ImageValidator.allFindings(image)
        let allowed: Set<String>
        switch scenario {
        case .lazyRefcountsDirty: allowed = ["H5"]
        case .bitmapInUse: allowed = ["D15"]
        default: allowed = []
        }
        let unexpected = findings.filter { !allowed.contains($0.code) }
        #expect(unexpected.isEmpty, "\(unexpected.map { "\($0.code) \($0.structure) \($0.message)" })")
        for code in allowed { #expect(findings.contains { $0.code == code }) }
    }

    @Test("iotest 303: the values of its expected output")
    func iotest303() throws {
        for (s, incompat) in [(StandardImages.Scenario.iotest303Zlib, UInt64(0)), (.iotest303Zstd, 8)] {
            let image = try QCOW2Image(path: try RealImages.image(s).path)
            let h = image.header
            #expect(h.clusterBits == 16 && h.size == 10_485_760 && h.l1Size == 1 && h.l1TableOffset == 0x30000)
            #expect(h.refcountTableOffset == 0x10000 && h.autoclearFeatures == 1 && h.headerLength == 112)
            #expect(h.incompatibleFeatures == incompat)
            #expect(image.extensions.first { $0.kind == .featureNameTable }?.length == 384)
            let b = try #require(image.bitmapsExtension)
            #expect(b.nbBitmaps == 2 && b.directorySize == 0x40 && b.directoryOffset == 0x9d0000)
            let b1 = image.bitmaps[0]
            let b2 = image.bitmaps[1]
            #expect(b1.name.utf8 == "bitmap-1" && b1.tableOffset == 0x9b0000 && b1.tableSize == 1 && b1.flags == 2)
            #expect(b1.granularityBits == 15)
            #expect(b2.name.utf8 == "bitmap-2" && b2.tableOffset == 0x9c0000 && b2.flags == 0 && b2.granularityBits == 16)
            let t1 = try image.bitmapTable(b1)
            #expect(t1.map(\.kind) == [.serialized] && t1[0].dataOffset == 10_092_544)
            #expect(try image.bitmapTable(b2).map(\.kind) == [.allZeroes])
        }
    }

    @Test("in-use bitmap from a crash: flags in-use+auto, inconsistent, still listed with its table")
    func inUse() throws {
        let image = try QCOW2Image(path: try RealImages.image(.bitmapInUse).path)
        let b = try #require(image.bitmaps.first)
        #expect(b.inUse && b.auto && !image.isConsistent(b))
        #expect(try image.bitmapTable(b).count == Int(b.tableSize))
    }

    @Test("names: 1023 bytes and UTF-8 survive")
    func names() throws {
        let long = try QCOW2Image(path: try RealImages.image(.bitmapLongName).path)
        #expect(long.bitmaps.first?.name.bytes.count == 1023)
        #expect(long.bitmaps.first?.entrySize == 1048)
        let utf = try QCOW2Image(path: try RealImages.image(.bitmapUTF8Name).path)
        #expect(utf.bitmaps.first?.name.utf8 == StandardImages.utf8BitmapName)
        #expect(utf.bitmaps.first?.nameSize == 12)
    }
}
