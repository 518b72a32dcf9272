public import QCOW2
import Synchronization

/// One parsed version of an image file, with everything computed from it once.
///
/// Entries are made by ``ImageCatalog`` (or ``ImageEntry/open(path:)`` for the CLI) and shared by
/// every request for the same file version. Each derived value (the finding index, a bitmap's dirty
/// count) is computed under a single flight (``Once``): concurrent requests wait for the one
/// computation, and the image's budgets are charged once.
public final class ImageEntry: Sendable {
    /// The file's identity when it was parsed.
    public let file: FileInfo
    /// The parsed image (its source keeps the descriptor open).
    public let image: QCOW2Image
    /// Whether the backing file the header names is in the images directory (`nil`: none named).
    public let backing: BackingFileCheck?
    /// The header, extension, directory and backing file findings (no table reads), checked once per entry.
    public let eagerFindings: [Finding]
    /// ``eagerFindings`` of each bitmap, by directory index.
    private let eagerByBitmap: [Int: [Finding]]
    private let index = Once<FindingIndex>()
    private let snapshotsOnce = Once<SnapshotTable>()
    private let snapshotFindingsOnce = Once<[Finding]>()
    private let dirty: [Int: Once<DirtyCount>]
    /// Set when a derived value was computed while a read failed: the catalog then parses again.
    private let taintedFlag = Atomic<Bool>(false)
    /// Bytes the image may still read to count dirty bytes, over all its bitmaps.
    private let dirtyBudget = Mutex<UInt64>(ImageEntry.dirtyImageBudget)

    /// Bytes of bitmap data read at most to count one bitmap's dirty bytes.
    public static let dirtyCountBudget: UInt64 = 32 << 20
    /// Bytes read at most to count dirty bytes over all bitmaps of one image version.
    public static let dirtyImageBudget: UInt64 = 256 << 20

    /// Wraps a parsed image; `backing` is what the catalog found where the backing file should be.
    public init(file: FileInfo, image: QCOW2Image, backing: BackingFileCheck? = nil) {
        var file = file
        file.dependencies = backing?.stamp ?? 0
        self.file = file
        self.image = image
        self.backing = backing
        var eager = ImageValidator.findings(image)
        if let f = backing?.finding(offset: image.header.backingFileOffset) { eager.append(f) }
        eagerFindings = eager
        var byBitmap: [Int: [Finding]] = [:]
        for f in eager {
            if let i = f.bitmapIndex { byBitmap[i, default: []].append(f) }
        }
        eagerByBitmap = byBitmap
        dirty = Dictionary(image.bitmaps.map { ($0.index, Once<DirtyCount>()) }, uniquingKeysWith: { a, _ in a })
    }

    /// Every finding of the image (header, directory, tables, snapshots), sorted and counted once.
    public var findingIndex: FindingIndex {
        index.value {
            watchingFailures { FindingIndex(ImageValidator.allFindings(image, eager: eagerFindings, snapshots: snapshotTable)) }
        }
    }

    /// The snapshot table's S findings, checked once per file version.
    public var snapshotFindings: [Finding] {
        snapshotFindingsOnce.value { ImageValidator.snapshotFindings(image, table: snapshotTable) }
    }

    /// The decoded snapshot table, read once per file version (``QCOW2Image/snapshots()``).
    public var snapshotTable: SnapshotTable {
        snapshotsOnce.value { watchingFailures { image.snapshots() } }
    }

    /// Where this entry's reads are recorded (the catalog's file sources), nil for other sources.
    public var activity: ReadActivity? { (image.source as? FileImageSource)?.activity }

    /// Whether something computed from this entry saw a failed read (see ``watchingFailures(_:)``):
    /// such an entry is not reused, so nothing computed from a failed read is served twice.
    public var isTainted: Bool { taintedFlag.load(ordering: .acquiring) }

    /// Runs `body`; when a read of this entry's file failed meanwhile, marks the entry tainted.
    public func watchingFailures<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        let before = activity?.failureCount
        defer { if let before, activity?.failureCount != before { taintedFlag.store(true, ordering: .releasing) } }
        return try body()
    }

    /// The header, extension and directory findings that concern `bitmap` (no table reads).
    public func findings(of bitmap: BitmapDirectoryEntry) -> [Finding] {
        eagerByBitmap[bitmap.index] ?? []
    }

    /// The exact dirty byte count of a bitmap, or why there is none; computed once per file version.
    public func dirtyCount(_ bitmap: BitmapDirectoryEntry) -> DirtyCount {
        guard let once = dirty[bitmap.index] else {
            return DirtyCount(bytes: nil, reason: "bitmap \(bitmap.index) is not in this image's directory")
        }
        return once.value { watchingFailures { count(bitmap) } }
    }

    /// Counts under the image's budget: many bitmaps pointing at big tables cannot make a summary or a
    /// bitmap list read without end. One bitmap may read up to ``dirtyCountBudget`` of data plus its
    /// table, within what the image has left.
    private func count(_ bitmap: BitmapDirectoryEntry) -> DirtyCount {
        let tableBytes = UInt64(bitmap.tableSize) &* 8
        let allowance = dirtyBudget.withLock { min($0, ImageEntry.dirtyCountBudget &+ tableBytes) }
        var spent: UInt64 = 0
        let c: DirtyCount
        do {
            if allowance < tableBytes || allowance == 0 {
                c = DirtyCount(
                    bytes: nil,
                    reason: "the image's budget for counting dirty bytes (\(ImageEntry.dirtyImageBudget >> 20) MiB of bitmap metadata and data) is spent; use the extents endpoint"
                )
            } else if let bytes = try image.dirtyBytes(bitmap, budget: allowance, spent: &spent) {
                c = DirtyCount(bytes: bytes, reason: nil)
            } else {
                c = DirtyCount(
                    bytes: nil,
                    reason: "bitmap data larger than \(ImageEntry.dirtyCountBudget >> 20) MiB: too large to count here; use the extents endpoint"
                )
            }
        } catch {
            c = DirtyCount(bytes: nil, reason: "cannot read the bitmap data: \(error.description)")
        }
        dirtyBudget.withLock { $0 -= min($0, max(spent, tableBytes)) }
        return c
    }
}
