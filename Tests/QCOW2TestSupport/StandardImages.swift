import Foundation

/// A real image made by qemu-img/qemu-io for one ``StandardImages/Scenario``.
package struct StandardImage: Sendable, CustomStringConvertible {
    /// The scenario that produced the image.
    package var scenario: StandardImages.Scenario
    /// Absolute path of the qcow2 image (the overlay for ``StandardImages/Scenario/backingOverlay``).
    package var path: String
    /// Other files that belong to the image: the backing file or the external data file.
    package var auxiliaryPaths: [String]
    /// How the image was made and what it should show.
    package var note: String

    /// The scenario name, so that `@Test(arguments:)` lists read well.
    package var description: String { scenario.rawValue }
}

/// A catalogue of real QCOW2 images covering the format variants qemu-img 7.2 can produce.
///
/// Images are small (mostly 512-byte clusters and 1-10 MiB virtual size). Each scenario's raw
/// value is the file name stem: scenario `.bitmaps` makes `bitmaps.qcow2` in the factory's directory.
package enum StandardImages {
    /// One way of making an image.
    package enum Scenario: String, CaseIterable, Sendable {
        /// `compat=0.10`, 512 B clusters, one write.
        case v2 = "v2"
        /// v3 with 512 B clusters, one write.
        case v3Cluster512 = "v3-c512"
        /// v3 with 4 KiB clusters, one plain and one compressed (zlib) write.
        case v3Cluster4K = "v3-c4096"
        /// v3 with 64 KiB clusters (QEMU's default; has the feature name table), one write.
        case v3Cluster64K = "v3-c65536"
        /// v3 with 2 MiB clusters, one write.
        case v3Cluster2M = "v3-c2M"
        /// `lazy_refcounts=on`, one write, clean close.
        case lazyRefcounts = "lazy-refcounts"
        /// `lazy_refcounts=on`, write, then `sigraise 9`: the dirty bit (incompatible bit 0) stays set.
        case lazyRefcountsDirty = "lazy-refcounts-dirty"
        /// `extended_l2=on` with 64 KiB clusters: 4 KiB write at 0, 2 KiB at 70 KiB, zero write of 8 KiB at 128 KiB.
        case extendedL2 = "extended-l2"
        /// `compression_type=zstd` (incompatible bit 3), one plain and one compressed write.
        case zstd = "zstd"
        /// Overlay `backing-overlay.qcow2` on `backing-base.qcow2` (`-b ... -F qcow2`), writes in both.
        case backingOverlay = "backing-overlay"
        /// External data file `data-file.data` (`data_file=`), one write.
        case dataFile = "data-file"
        /// External data file with `data_file_raw=on` (autoclear bit 1).
        case dataFileRaw = "data-file-raw"
        /// LUKS encryption (secret `abc`, sha512 key derivation), one encrypted write.
        case luks = "luks"
        /// Several bitmaps: enabled 64 KiB, disabled-before-writes, 512 B, 2 GiB, and one disabled after writes.
        case bitmaps = "bitmaps"
        /// iotest 303 exactly (zlib): 10 MiB, bitmap-1 g 32 KiB, 6 writes, bitmap-2 g 64 KiB disabled, 2 writes.
        case iotest303Zlib = "iotest-303-zlib"
        /// iotest 303 exactly, with `compression_type=zstd`.
        case iotest303Zstd = "iotest-303-zstd"
        /// Bitmap `b-inuse` left with flags in-use + auto by a qemu-io crash.
        case bitmapInUse = "bitmap-in-use"
        /// Two internal snapshots `snap-one` and `snap-two` with writes before, between and after.
        case snapshots = "snapshots"
        /// A bitmap whose name is 1023 bytes long (the QEMU maximum).
        case bitmapLongName = "bitmap-long-name"
        /// A bitmap named "ünï cødé" (12 UTF-8 bytes).
        case bitmapUTF8Name = "bitmap-utf8-name"

        /// The image file name.
        package var fileName: String { rawValue + ".qcow2" }
    }

    /// The 1023-byte bitmap name used by ``Scenario/bitmapLongName``.
    package static let longBitmapName = String(repeating: "L", count: 1023)

    /// The UTF-8 bitmap name used by ``Scenario/bitmapUTF8Name``.
    package static let utf8BitmapName = "ünï cødé"

    /// The LUKS secret used by ``Scenario/luks``.
    package static let luksSecret = "abc"

    /// Makes every scenario in `factory`'s directory.
    ///
    /// - Parameters:
    ///   - factory: Where to make the images.
    ///   - scenarios: Which scenarios to make; all by default.
    ///   - concurrency: How many scenarios run at the same time (each runs its tools sequentially).
    /// - Returns: The images in the order of `scenarios`.
    /// - Throws: The first ``QemuToolError`` any scenario threw.
    package static func makeAll(
        in factory: QemuImageFactory, scenarios: [Scenario] = Scenario.allCases, concurrency: Int = 2
    ) throws -> [StandardImage] {
        let results = ResultBox(count: scenarios.count)
        let queue = DispatchQueue(label: "StandardImages.makeAll", attributes: .concurrent)
        let group = DispatchGroup()
        let slots = DispatchSemaphore(value: max(1, concurrency))
        // LUKS is by far the slowest (key derivation benchmark), so start it first.
        let order = scenarios.indices.sorted { scenarios[$0] == .luks && scenarios[$1] != .luks }
        for index in order {
            slots.wait()
            queue.async(group: group) {
                defer { slots.signal() }
                results.set(index, Result { try make(scenarios[index], in: factory) })
            }
        }
        group.wait()
        return try results.values().map { try $0.get() }
    }

    /// Makes one scenario in `factory`'s directory.
    ///
    /// - Throws: ``QemuToolError`` if a tool fails or the result is not what the scenario promises.
    package static func make(_ scenario: Scenario, in factory: QemuImageFactory) throws -> StandardImage {
        let name = scenario.fileName
        let path = factory.path(name)
        let small = ["cluster_size=512"]
        let mib: UInt64 = 1 << 20
        var auxiliary: [String] = []
        let note: String
        switch scenario {
        case .v2:
            try factory.create(name, size: mib, options: ["compat=0.10"] + small)
            try factory.write(name, offset: 0, length: 4096)
            note = "compat 0.10 (72-byte header), 512 B clusters, 1 MiB, 0xab at 0-4 KiB"
        case .v3Cluster512, .v3Cluster4K, .v3Cluster64K, .v3Cluster2M:
            let (clusterSize, size): (UInt64, UInt64) = switch scenario {
            case .v3Cluster512: (512, mib)
            case .v3Cluster4K: (4096, 4 * mib)
            case .v3Cluster64K: (65536, 4 * mib)
            default: (2 * mib, 8 * mib)
            }
            try factory.create(name, size: size, options: ["cluster_size=\(clusterSize)"])
            try factory.write(name, offset: clusterSize, length: clusterSize)
            if scenario == .v3Cluster4K {
                try factory.write(name, pattern: 0x5a, offset: 8 * clusterSize, length: clusterSize, compressed: true)
            }
            note = "v3, \(clusterSize) B clusters, \(size) B, 0xab in guest cluster 1"
                + (scenario == .v3Cluster4K ? ", zlib-compressed 0x5a cluster at 32 KiB" : "")
        case .lazyRefcounts:
            try factory.create(name, size: mib, options: ["lazy_refcounts=on"] + small)
            try factory.write(name, offset: 0, length: 4096)
            note = "compatible bit 0 (lazy refcounts), clean close: dirty bit clear"
        case .lazyRefcountsDirty:
            try factory.create(name, size: mib, options: ["lazy_refcounts=on"] + small)
            try factory.crash(name, after: ["write -P 0xab 0 4096"])
            let info = try factory.infoJSON(name)
            guard info["dirty-flag"] as? Bool == true else {
                throw QemuToolError.unexpectedOutput(command: "qemu-img info \(name)", detail: "dirty-flag is not true")
            }
            note = "lazy refcounts, write then sigraise 9: incompatible bit 0 (dirty) set, info dirty-flag true, check exits 2"
        case .extendedL2:
            try factory.create(name, size: mib, options: ["extended_l2=on", "cluster_size=65536"])
            try factory.qemuIO(name, ["write -P 0xab 0 4k", "write -P 0xcd 70k 2k", "write -z 128k 8k"])
            note = "extended L2 (incompatible bit 4), 64 KiB clusters / 2 KiB subclusters: bitmaps 0x3, 0x8, zero 0xf<<32"
        case .zstd:
            try factory.create(name, size: mib, options: ["compression_type=zstd"] + small)
            try factory.write(name, offset: 0, length: 4096)
            try factory.write(name, pattern: 0x5a, offset: 8192, length: 512, compressed: true)
            note = "compression_type 1 (incompatible bit 3), 0xab at 0-4 KiB, zstd-compressed 0x5a cluster at 8 KiB"
        case .backingOverlay:
            let base = "backing-base.qcow2"
            try factory.create(base, size: mib, options: small)
            try factory.write(base, pattern: 0xaa, offset: 0, length: 64 * 1024)
            try factory.create(name, size: mib, options: small, backing: base)
            try factory.write(name, pattern: 0xbb, offset: 32 * 1024, length: 4096)
            auxiliary = [factory.path(base)]
            note = "overlay with backing file backing-base.qcow2 (format ext 'qcow2'); base 0xaa at 0-64 KiB, overlay 0xbb at 32 KiB"
        case .dataFile, .dataFileRaw:
            let data = scenario.rawValue + ".data"
            let raw = scenario == .dataFileRaw ? ["data_file_raw=on"] : []
            try factory.create(name, size: mib, options: ["data_file=\(data)"] + raw + small)
            try factory.write(name, offset: 0, length: 4096)
            auxiliary = [factory.path(data)]
            note = "external data file \(data) (incompatible bit 2)" + (raw.isEmpty ? "" : ", data_file_raw (autoclear bit 1)")
        case .luks:
            let secret = "secret,id=sec0,data=\(luksSecret)"
            var attempt = 0
            while true {
                attempt += 1
                do {
                    try factory.create(
                        name, size: mib,
                        options: [
                            "encrypt.format=luks", "encrypt.key-secret=sec0", "encrypt.iter-time=10",
                            "encrypt.hash-alg=sha512",
                        ] + small,
                        extraArguments: ["--object", secret])
                    break
                } catch {
                    // qemu-img 7.2 LUKS creation fails intermittently: "Unable to get accurate CPU usage".
                    try? FileManager.default.removeItem(atPath: path)
                    if attempt >= 3 { throw error }
                }
            }
            try factory.qemuIO(
                "driver=qcow2,file.filename=\(path),encrypt.key-secret=sec0", ["write -P 0xab 0 4096"],
                extraArguments: ["--object", secret, "--image-opts"])
            note = "LUKS (crypt_method 2, crypto header extension), secret 'abc', sha512; 4 KiB encrypted write at 0"
        case .bitmaps:
            try factory.create(name, size: 4 * mib, options: small)
            try factory.bitmapAdd(name, "b-enabled", granularity: 65536)
            try factory.bitmapAdd(name, "b-disabled", granularity: 65536, disabled: true)
            try factory.bitmapAdd(name, "b-512", granularity: 512)
            try factory.bitmapAdd(name, "b-2g", granularity: 2_147_483_648)
            try factory.bitmapAdd(name, "b-frozen", granularity: 4096)
            try factory.qemuIO(name, ["write -P 0xab 0 64k", "write -P 0xab 1M 4k", "write -P 0xab 3584k 512"])
            try factory.bitmapDisable(name, "b-frozen")
            try factory.write(name, pattern: 0xcd, offset: 2 * mib, length: 4096)
            note = "4 MiB, 512 B clusters; b-enabled (64 KiB), b-disabled (disabled before writes: all-zeroes), "
                + "b-512 (2 table entries), b-2g (2 GiB, 1 bit), b-frozen (4 KiB, disabled after the first writes); "
                + "writes 0-64 KiB, 1 MiB+4 KiB, 3.5 MiB+512 B, then 2 MiB+4 KiB"
        case .iotest303Zlib, .iotest303Zstd:
            let compression = scenario == .iotest303Zlib ? "zlib" : "zstd"
            try factory.create(name, size: 10 * mib, options: ["compression_type=\(compression)"])
            try factory.bitmapAdd(name, "bitmap-1", granularity: 32768)
            for chunk in 0..<6 as Range<UInt64> { try factory.write(name, pattern: nil, offset: chunk * mib, length: mib) }
            try factory.bitmapAdd(name, "bitmap-2", granularity: 65536, disabled: true)
            for chunk in 6..<8 as Range<UInt64> { try factory.write(name, pattern: nil, offset: chunk * mib, length: mib) }
            note = "iotest 303 (\(compression)): directory 0x40 at 0x9d0000, bitmap-1 table 0x9b0000 (serialized 10092544), "
                + "bitmap-2 table 0x9c0000 (all-zeroes)"
        case .bitmapInUse:
            try factory.create(name, size: mib, options: small)
            try factory.bitmapAdd(name, "b-inuse")
            try factory.write(name, offset: 0, length: 4096)
            try factory.crashWithInUseBitmap(name, offset: 65536, length: 4096)
            note = "b-inuse (default g 4 KiB) flags 0x3 in-use + auto after a crash; its table still shows only the 0-4 KiB write"
        case .snapshots:
            try factory.create(name, size: mib, options: small)
            try factory.write(name, pattern: 0x11, offset: 0, length: 4096)
            try factory.snapshotCreate(name, "snap-one")
            try factory.write(name, pattern: 0x22, offset: 0, length: 4096)
            try factory.snapshotCreate(name, "snap-two")
            try factory.write(name, pattern: 0x33, offset: 8192, length: 512)
            note = "snapshots id 1 'snap-one' and id 2 'snap-two' (extra data 24 bytes, icount 0)"
        case .bitmapLongName:
            try factory.create(name, size: mib, options: small)
            try factory.bitmapAdd(name, longBitmapName)
            try factory.write(name, offset: 0, length: 4096)
            note = "bitmap name of 1023 x 'L' (directory entry 1048 bytes), default g 4 KiB"
        case .bitmapUTF8Name:
            try factory.create(name, size: mib, options: small)
            try factory.bitmapAdd(name, utf8BitmapName)
            try factory.write(name, offset: 0, length: 4096)
            note = "bitmap name 'ünï cødé' (name_size 12), default g 4 KiB"
        }
        return StandardImage(scenario: scenario, path: path, auxiliaryPaths: auxiliary, note: note)
    }
}

/// Thread-safe slots for the results of ``StandardImages/makeAll(in:scenarios:concurrency:)``.
private final class ResultBox: @unchecked Sendable {
    private let lock = NSLock()
    private var slots: [Result<StandardImage, any Error>?]

    init(count: Int) { slots = Array(repeating: nil, count: count) }

    /// Stores the result of scenario `index`.
    func set(_ index: Int, _ result: Result<StandardImage, any Error>) {
        lock.lock()
        defer { lock.unlock() }
        slots[index] = result
    }

    /// All results in order; a missing one (impossible after the group finished) becomes an error.
    func values() -> [Result<StandardImage, any Error>] {
        lock.lock()
        defer { lock.unlock() }
        return slots.map {
            $0 ?? .failure(QemuToolError.unexpectedOutput(command: "makeAll", detail: "scenario did not finish"))
        }
    }
}
