// libFuzzer target: the input is a whole qcow2 file (MemoryImageSource). Exercises everything an
// HTTP request can reach: the parse, header/extensions/feature names, every bitmap's directory entry
// with its dirty count, the first and last page of its table, the first page of its dirty extents
// (and the page after it), the snapshot table, every finding, and the JSON of every view; then every
// image route's document through the document layer (Documents.plan + render, as the API serves them),
// with query parameters taken from the input.
//
// Built and run by Tests/Fuzz/run-fuzz.sh (swiftc -sanitize=fuzzer,address, no SwiftPM).
import QCOW2
@testable import QCOW2API

/// A fixed file identity for the summary view.
let fuzzFile = FileInfo(
    name: "fuzz.qcow2", device: 1, inode: 2, size: 0, allocatedBytes: 0, mtimeSec: 1_700_000_000, mtimeNsec: 5,
    ctimeSec: 1_700_000_000, ctimeNsec: 6)

/// The documents the daemon serves; the catalog is an empty directory (only the listing reads it).
let fuzzDocuments: Documents = {
    guard let catalog = try? ImageCatalog(path: "/") else { fatalError("fuzz: cannot open / as a catalog") }
    return Documents(catalog: catalog)
}()

/// Every route that renders a document about one image.
let fuzzRoutes: [RouteID] = [
    .summary, .header, .extensions, .bitmaps, .bitmap, .table, .extents, .snapshots, .findings, .l1, .l2, .map, .chain,
    .check, .checkpoints, .checkpoint, .checkpointExtents,
]

/// A query string for a route, with values taken from the input's last bytes.
func fuzzQuery(_ bytes: [UInt8], _ salt: Int) -> Substring {
    let a = tail(bytes, 24 + salt % 8), b = tail(bytes, 3 + salt % 5)
    let parts = [
        "offset=\(a % 70_000)", "limit=\(b % 5_000)", "start=\(a)", "length=\(b)", "cursor=\(a % 100_000)",
        "all=\(b & 1 == 0 ? "true" : "false")", "with=\(b & 2 == 0 ? "nope" : "a,b")",
    ]
    return Substring(parts.enumerated().filter { (i, _) in (a >> UInt64(i)) & 1 == 1 }.map(\.1).joined(separator: "&"))
}

/// Renders `value` the way the daemon does (compact) and checks the text is not empty.
func render(_ value: JSONValue) {
    let bytes = JSONWriter().bytes(value)
    precondition(!bytes.isEmpty)
}

/// Same budget as the daemon's catalog.
func dirtyCount(_ image: QCOW2Image, _ b: BitmapDirectoryEntry) -> DirtyCount {
    do {
        if let bytes = try image.dirtyBytes(b, budget: ImageEntry.dirtyCountBudget) {
            precondition(bytes <= image.header.size, "dirty bytes above the virtual size")
            return DirtyCount(bytes: bytes, reason: nil)
        }
        return DirtyCount(bytes: nil, reason: "too large")
    } catch {
        return DirtyCount(bytes: nil, reason: error.description)
    }
}

/// The 8 bytes ending `back` bytes before the end of the input, little-endian (0 when too short).
func tail(_ bytes: [UInt8], _ back: Int) -> UInt64 {
    guard bytes.count >= back + 8 else { return 0 }
    var v: UInt64 = 0
    for i in 0..<8 { v |= UInt64(bytes[bytes.count - back - 8 + i]) << UInt64(8 * i) }
    return v
}

func exercise(_ bytes: [UInt8]) {
    let image: QCOW2Image
    do {
        image = try QCOW2Image(source: MemoryImageSource(bytes: bytes))
    } catch {
        _ = error.description
        render(ImageViews.error(error))
        return
    }
    render(ImageViews.header(image))
    render(ImageViews.extensions(image))
    render(ImageViews.bitmapsExtension(image))
    for g in FeatureGroup.allCases { _ = image.featureNames(g) }
    _ = image.backingFormat
    _ = image.dataFile
    var counts: [Int: DirtyCount] = [:]
    let dirty: (BitmapDirectoryEntry) -> DirtyCount = { b in
        if let c = counts[b.index] { return c }
        let c = dirtyCount(image, b)
        counts[b.index] = c
        return c
    }
    let size = image.header.size
    let eager = ImageValidator.findings(image)
    for b in image.bitmaps.prefix(256) {
        render(ImageViews.bitmap(b, in: image, findings: eager.filter { $0.bitmapIndex == b.index }, dirty: dirty))
        _ = image.bitmap(named: b.name)
        _ = image.inconsistencyReason(b)
        let total = UInt64(b.tableSize)
        // First page (default limit) and last page of the table, as /table?offset=&limit= serves them.
        for (offset, limit) in [(UInt64(0), 256), (total == 0 ? 0 : total - 1, 1), (total > 4096 ? total - 4096 : 0, 4096)] {
            if let page = try? image.bitmapTable(b, offset: offset, limit: limit) {
                render(.array(page.map(ImageViews.tableEntry)))
            }
        }
        // First page of extents (default limit 1000) and the page the cursor points at.
        if size > 0, let first = try? image.dirtyExtents(b, start: 0, length: size, limit: 1000) {
            var end: UInt64 = 0
            for e in first.extents {
                precondition(e.length > 0 && e.start == end, "extents not contiguous")
                end = e.start + e.length
            }
            precondition(end <= size)
            render(.array(first.extents.map(ImageViews.extent)))
            if let next = first.next {
                precondition(next > 0 && next < size)
                _ = try? image.dirtyExtents(b, start: next, length: size - next, limit: 1000)
            }
            // A small page near the end of the disk (the request a client makes with start=).
            _ = try? image.dirtyExtents(b, start: size - 1, length: 1, limit: 1)
            // A page at a guest offset and length taken from the input's last 16 bytes (?start=&length=&limit=).
            let start = tail(bytes, 16) % size
            let length = 1 + tail(bytes, 8) % (size - start)
            _ = try? image.dirtyExtents(b, start: start, length: length, limit: Int(tail(bytes, 1) % 17 + 1))
        }
        // A table page at an offset taken from the input (?offset=&limit=).
        if total > 0 { _ = try? image.bitmapTable(b, offset: tail(bytes, 12) % total, limit: Int(tail(bytes, 2) % 4096 + 1)) }
    }
    let snapshots = image.snapshots()
    render(.array(snapshots.entries.prefix(1000).map(ImageViews.snapshot)))
    render(.array(ImageValidator.snapshotFindings(image, table: snapshots).map(ImageViews.finding)))
    let index = FindingIndex(ImageValidator.allFindings(image, eager: eager, snapshots: snapshots))
    // The refcount check: bounded, and its figures consistent with its problems.
    let check = ImageCheck.run(image)
    precondition(check.corruptionsFixed == 0 && check.leaksFixed == 0)
    precondition(UInt64(check.problems.count) + check.problemsOmitted == check.problemCounts.values.reduce(0, +))
    if check.incomplete == nil {
        precondition(check.problemCounts.values.reduce(0, +) == check.corruptions + check.leaks + check.checkErrors,
            "every counted corruption, leak and internal error is one problem")
        precondition(check.imageEndOffset > 0 && check.imageEndOffset % image.header.clusterSize == 0)
    }
    for f in check.problems { precondition(Rule.withCode(f.code) != nil) }
    _ = FindingIndex(index, adding: check.problems).page(0, 100)
    render(.array(index.sorted.prefix(1000).map(ImageViews.finding)))
    render(ImageViews.codeCounts(index))
    render(ImageViews.summary(image, file: fuzzFile, findings: index, dirty: dirty))

    // The allocation map: pages cover the range in order, without gaps, overlaps or empty extents.
    let map = GuestMap(layers: [MapLayer(qcow2: image, metadataPreallocated: tail(bytes, 7) & 1 == 1)])
    var from = tail(bytes, 20) % max(1, map.virtualSize)
    for _ in 0..<4 {
        guard from < map.virtualSize,
            let page = try? map.page(
                from: from, to: map.virtualSize, limit: Int(tail(bytes, 6) % 64 + 1), l2Budget: 4096, stepBudget: 4096)
        else { break }
        var at = from
        for e in page.extents {
            precondition(e.start == at && e.length > 0, "map extents must be contiguous and non-empty")
            at = e.end
        }
        precondition(at <= map.virtualSize, "map past the virtual size")
        if let n = page.next { precondition(n == at, "the next page starts where this one ends") }
        for i in page.issues { render(ImageViews.finding(MapChecks.finding(i))) }
        guard let n = page.next else { break }
        from = n
    }

    // Checkpoints: the union of one bitmap over a one-layer chain is that bitmap's extents; sizes add up.
    let chainBitmaps = ChainBitmaps(layers: [ChainBitmaps.Layer(image: image, findings: [])])
    // Only the first bitmap of a name: the union (as QEMU's lookup) resolves a name to it.
    for b in image.bitmaps.prefix(2) where b.granularity != nil && b.granularityBits <= 62 && image.bitmap(named: b.name)?.index == b.index {
        let limit = Int(tail(bytes, 9) % 32 + 1)
        let start = tail(bytes, 11) % max(1, image.header.size)
        if let union = try? chainBitmaps.unionExtents([b.name], start: start, length: image.header.size, limit: limit, stepBudget: 1 << 16),
            let own = try? image.dirtyExtents(b, start: start, length: image.header.size, limit: limit)
        {
            var at = start
            for e in union.extents {
                precondition(e.start == at && e.length > 0, "union extents must be contiguous and non-empty")
                at = e.start + e.length
            }
            precondition(union.extents == own.extents && union.next == own.next, "a union of one bitmap is that bitmap")
        }
        let r = CheckpointReadiness(b.name, in: chainBitmaps, layerNames: ["fuzz.qcow2"], writerPresent: nil, complete: true)
        for reason in r.reasons { precondition(reason.rule.structure == .checkpoint) }
        if let sizes = try? CheckpointSizes.measure([b.name], bitmaps: chainBitmaps, map: map, bitmapBudget: 1 << 14, mapBudget: 1 << 14) {
            precondition(sizes.backup + sizes.zero == sizes.dirty, "checkpoint sizes add up")
        }
    }

    // The document layer, route by route, as the API serves them (a fresh entry per input).
    let entry = ImageEntry(file: fuzzFile, image: image)
    let bitmapNames: [[UInt8]?] = image.bitmaps.prefix(2).map { Optional($0.name.bytes) } + [Array("nope".utf8)]
    // Every input has the same file identity: forget the previous input's check, or /check would reuse it.
    fuzzDocuments.catalog.checks.retain([])
    for (salt, route) in fuzzRoutes.enumerated() {
        for name in [RouteID.bitmap, .table, .extents, .checkpoint, .checkpointExtents].contains(route) ? bitmapNames : [nil] {
            guard let params = try? Parameters(query: fuzzQuery(bytes, salt)) else { continue }
            // The L2 route: the first L1 entry, and one picked by the input.
            let index: UInt64? = route == .l2 ? tail(bytes, 5 + salt) % max(1, image.l1EntryCount) : nil
            guard
                let plan = try? fuzzDocuments.plan(
                    route, entry: entry, locks: nil, bitmap: name, index: index, parameters: params),
                let doc = try? plan.render()
            else { continue }
            render(doc.value)
        }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    exercise(bytes)
    return 0
}
