import Foundation
import QCOW2
import QCOW2TestSupport
import Testing

/// Thousands of corrupted variants of real and crafted images: the parser returns a value or a
/// typed error for each, never traps, never reads more than its caps, and finishes fast.
@Suite("Mutations never trap")
struct MutationTests {
    /// Exercises everything a request can reach; returns the bytes the source was asked for.
    static func exercise(_ source: any ImageSource) -> (UInt64, Int) {
        let src = CountingImageSource(source)
        guard let image = try? QCOW2Image(source: src) else { return (src.totals.bytes, src.totals.largest) }
        _ = ImageValidator.allFindings(image)
        for b in image.bitmaps.prefix(64) {
            _ = try? image.bitmapTable(b, offset: 0, limit: 16)
            if b.tableSize > 0 { _ = try? image.bitmapTable(b, offset: UInt64(b.tableSize) - 1, limit: 1) }
            _ = image.isConsistent(b)
            _ = b.flagNames
            _ = b.name.escaped
        }
        _ = ImageValidator.snapshotFindings(image)
        for g in FeatureGroup.allCases { _ = image.featureNames(g) }
        return (src.totals.bytes, src.totals.largest)
    }

    /// Regions worth mutating: header, extension area, directory, tables, snapshot table.
    static func regions(of bytes: [UInt8]) -> [Range<Int>] {
        guard let image = try? QCOW2Image(source: MemoryImageSource(bytes: bytes)) else { return [0..<min(bytes.count, 112)] }
        var r: [Range<Int>] = [0..<Int(min(UInt64(bytes.count), UInt64(image.header.headerLength)))]
        let extEnd = (image.extensionsEndMarker ?? image.extensions.last.map { $0.dataOffset + UInt64($0.length) } ?? 112) + 8
        r.append(Int(image.header.extensionsStart)..<Int(min(extEnd, UInt64(bytes.count))))
        if let b = image.bitmapsExtension {
            let s = Int(b.directoryOffset)
            r.append(s..<min(bytes.count, s + Int(b.directorySize)))
        }
        for b in image.bitmaps {
            let s = Int(b.tableOffset)
            r.append(s..<min(bytes.count, s + Int(b.tableSize) * 8))
        }
        let so = Int(image.header.snapshotsOffset)
        if image.header.nbSnapshots > 0 { r.append(so..<min(bytes.count, so + 256)) }
        return r.filter { !$0.isEmpty && $0.upperBound <= bytes.count }
    }

    static func inputs() throws -> [(String, [UInt8])] {
        var out: [(String, [UInt8])] = CraftedImages.all.prefix(12).map { ($0.name, $0.bytes) }
        for s in [StandardImages.Scenario.bitmaps, .snapshots, .iotest303Zlib, .v2, .backingOverlay, .bitmapInUse, .luks] {
            let path = try RealImages.image(s).path
            out.append((s.rawValue, Array(try Data(contentsOf: URL(fileURLWithPath: path)))))
        }
        return out
    }

    @Test("every byte of every metadata region, three ways, plus seeded random multi-byte damage")
    func mutate() throws {
        var variants = 0
        var worst: Duration = .zero
        let seed = UInt64(ProcessInfo.processInfo.environment["QCOWSCOPE_MUTATION_SEED"] ?? "") ?? UInt64.random(in: 1...UInt64.max)
        print("mutation seed: \(seed) (set QCOWSCOPE_MUTATION_SEED to replay)")
        var rng = SplitMix64(seed: seed)
        let clock = ContinuousClock()
        for (name, original) in try Self.inputs() {
            var cases: [PatchedImageSource] = []
            let regions = Self.regions(of: original)
            for region in regions {
                for i in region {
                    for v: UInt8 in [original[i] ^ 0xff, 0x00, 0x80 | original[i]] where v != original[i] {
                        cases.append(PatchedImageSource(base: original, patches: [i: v]))
                    }
                }
            }
            for _ in 0..<300 {
                var patches: [Int: UInt8] = [:]
                for _ in 0..<Int(rng.next() % 8 + 1) {
                    let r = regions[Int(rng.next() % UInt64(regions.count))]
                    patches[r.lowerBound + Int(rng.next() % UInt64(r.count))] = UInt8(truncatingIfNeeded: rng.next())
                }
                let length = rng.next() % 10 == 0 ? Int(rng.next() % UInt64(original.count)) : original.count
                cases.append(PatchedImageSource(base: original, patches: patches, length: length))
            }
            for m in cases {
                let start = clock.now
                let (bytes, largest) = Self.exercise(m)
                let took = clock.now - start
                worst = max(worst, took)
                variants += 1
                #expect(largest <= Int(Limits.maxBitmapDirectorySize), "\(name): one read of \(largest) bytes")
                #expect(bytes <= 64 << 20, "\(name): \(bytes) bytes read for one variant")
                // A hang detector, not a speed claim: the read bounds above are the budget (the slowest
                // variants, 65,536 snapshot entries of zeros past the end of a tiny file, take ~0.3 s in a
                // debug build alone and several times that next to the rest of the suite on 2 cores).
                #expect(took < .seconds(10), "\(name): a variant took \(took)")
            }
        }
        print("mutation variants: \(variants), slowest: \(worst)")
        #expect(variants > 5000)
    }
}

/// The original bytes, shared, with a few bytes patched and optionally cut short: no copy per variant.
struct PatchedImageSource: ImageSource {
    let base: [UInt8]
    let patches: [Int: UInt8]
    let length: Int

    init(base: [UInt8], patches: [Int: UInt8], length: Int? = nil) {
        self.base = base
        self.patches = patches
        self.length = min(length ?? base.count, base.count)
    }

    var size: UInt64 { UInt64(length) }

    func read(at offset: UInt64, count: Int) throws(QCOW2Error) -> [UInt8] {
        guard count >= 0, offset <= size, UInt64(count) <= size - offset else {
            throw QCOW2Error(.truncated, structure: "file", offset: offset, message: "read past the end")
        }
        let lo = Int(offset)
        var out = Array(base[lo..<(lo + count)])
        for (i, v) in patches where i >= lo && i < lo + count { out[i - lo] = v }
        return out
    }
}

/// A small seeded generator, so a failing run can be replayed.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}
