/// Checks a ``QCOW2Image`` against the rules of the registry (``Rule/all``) and returns findings.
///
/// The Model only decodes; this is where rules are checked and where the decoder's
/// ``DecodeIssue``s become findings. Nothing here throws: an unreadable structure is a finding.
///
/// - ``findings(_:)``: header, extensions and bitmap directory; no I/O beyond what the image already read.
/// - ``tableFindings(_:_:)``: one bitmap's table and data (reads the table in bounded chunks).
/// - ``snapshotFindings(_:)``: the snapshot table (reads it).
/// - ``allFindings(_:)``: all of them, with one budget of table entries for the whole image.
public enum ImageValidator {
    /// The findings about the header (`H*`), the header extensions (`X*`), the bitmaps extension (`E*`)
    /// and the bitmap directory entries (`D*`), in that order.
    ///
    /// Cheap (no reads), but proportional to the number of directory entries: callers that need it
    /// often should keep the result with the image.
    public static func findings(_ image: QCOW2Image) -> [Finding] {
        var f = HeaderChecks.check(image.header, fileSize: image.source.size)
        f += HeaderChecks.extensionArea(image.decodeIssues)
        f += HeaderChecks.checkExtensions(image.header, extensions: image.extensions, backingFile: image.backingFile, fileSize: image.source.size)
        f += BitmapDirectoryChecks.check(image)
        return f
    }

    /// T6 alone for one bitmap (no table read): its table ends past the end of the file, nil when not.
    public static func tablePastEnd(_ image: QCOW2Image, _ bitmap: BitmapDirectoryEntry) -> Finding? {
        TableChecks.pastEnd(image, bitmap)
    }

    /// The table rules T1-T6 for one bitmap, reading its whole table in bounded chunks.
    ///
    /// Tables larger than ``Limits/maxTableEntriesChecked`` (which D4/D9 already flag) are not read;
    /// an `info` T1 finding says so. In-use bitmaps are checked too: their findings say the data is stale.
    /// At most 100 entry findings are listed per bitmap, then an `info` T1 finding counts the rest.
    public static func tableFindings(_ image: QCOW2Image, _ bitmap: BitmapDirectoryEntry) -> [Finding] {
        TableChecks.check(image, bitmap)
    }

    /// The snapshot table rules S1-S8: reads and decodes the snapshot table, then checks it.
    public static func snapshotFindings(_ image: QCOW2Image) -> [Finding] {
        snapshotFindings(image, table: image.snapshots())
    }

    /// The snapshot table rules S1-S8 for a table already read with ``QCOW2Image/snapshots()``.
    public static func snapshotFindings(_ image: QCOW2Image, table: SnapshotTable) -> [Finding] {
        SnapshotChecks.check(table, header: image.header)
    }

    /// Every finding: ``findings(_:)``, every bitmap's ``tableFindings(_:_:)`` (bounded), then ``snapshotFindings(_:)``.
    ///
    /// Whole-table checks share one budget of ``Limits/maxTableEntriesPerImage`` table entries for the
    /// image, so a small hostile file (thousands of entries pointing at one huge table) cannot keep a
    /// request busy for long, and stop once ``Limits/maxTableFindingsPerImage`` table findings were made
    /// (thousands of bitmaps sharing one broken table): bitmaps past either budget get one `info` T1
    /// finding saying they were not checked.
    public static func allFindings(_ image: QCOW2Image) -> [Finding] {
        allFindings(image, eager: findings(image))
    }

    /// ``allFindings(_:)`` reusing the ``findings(_:)`` a caller already holds for the image.
    public static func allFindings(_ image: QCOW2Image, eager: [Finding]) -> [Finding] {
        allFindings(image, eager: eager, snapshots: image.snapshots())
    }

    /// ``allFindings(_:eager:)`` reusing the snapshot table a caller already read (65,536 entries of a
    /// table past the end of a tiny file are worth reading once).
    public static func allFindings(_ image: QCOW2Image, eager: [Finding], snapshots: SnapshotTable) -> [Finding] {
        // Thousands of small tables and refcount entries, close together: read them a window at a time.
        var image = image
        image.source = ReadAheadSource(image.source)
        var all = eager
        var budget = Limits.maxTableEntriesPerImage
        var skipped: [Int] = []
        var tableFindingCount = 0
        for b in image.bitmaps {
            let cost = max(UInt64(b.tableSize), 1)
            guard cost <= budget, tableFindingCount < Limits.maxTableFindingsPerImage else {
                skipped.append(b.index)
                continue
            }
            budget -= cost
            let found = tableFindings(image, b)
            tableFindingCount += found.count
            all += found
        }
        if let first = skipped.first {
            all.append(
                Finding(notChecked: .t1, structure: "bitmap_table[\(first)]", bitmapIndex: first,
                    message: "tables of \(skipped.count) bitmap(s) from index \(first) not checked: the image's budget for whole-table checks (\(Limits.maxTableEntriesPerImage) table entries, \(Limits.maxTableFindingsPerImage) findings) is spent"))
        }
        all += snapshotFindings(image, table: snapshots)
        return all
    }
}
