/// A problem the decoder met that stopped or limited the decoding of a structure, kept as plain data.
///
/// Decoding is tolerant: instead of throwing, the Model records what it could not decode and goes
/// on with what it could. Validation (`ImageValidator`) turns every issue into a finding of the
/// rule registry; the Model itself knows nothing about rules.
public enum DecodeIssue: Sendable, Hashable {
    /// More than ``Limits/maxExtensions`` header extensions: the extension at `offset` and the rest were not read.
    case tooManyExtensions(offset: UInt64)
    /// The extension at `offset` declares data ending at `dataEnd`, past the end of the extension
    /// area (`areaEnd`) or of the file; only the bytes that exist were kept.
    case extensionPastArea(offset: UInt64, magic: UInt32, length: UInt32, dataEnd: UInt64, areaEnd: UInt64)
    /// An extension header (8 bytes) starts at `offset` but does not fit before the end of the
    /// extension area (`areaEnd`): QEMU's "Header extension too large".
    case extensionHeaderCut(offset: UInt64, areaEnd: UInt64)
    /// The bitmap directory starts at or past the end of the file (`fileSize` bytes): nothing was read.
    case bitmapDirectoryStartsPastEnd(directoryOffset: UInt64, fileSize: UInt64)
    /// The bitmap directory ends at `end`, past the end of the file: only the bytes that exist were read.
    case bitmapDirectoryPastEnd(end: UInt64, fileSize: UInt64)
    /// Directory entry `index` cannot be decoded (`error` says where and why); decoding stopped there,
    /// with `bytesLeft` bytes of the directory not consumed by the failed entry.
    case bitmapDirectoryEntryUndecodable(index: Int, error: QCOW2Error, bytesLeft: Int)
    /// The directory holds more than ``Limits/maxDirectoryEntries`` entries; decoding stopped at `index` (file offset `offset`).
    case tooManyBitmapDirectoryEntries(index: Int, offset: UInt64)
    /// The snapshot table starts at or past the end of the file (`fileSize` bytes): nothing was read.
    case snapshotTableStartsPastEnd(fileSize: UInt64)
    /// The snapshot table's entries run past the end of the file (`fileSize` bytes) from file offset
    /// `offset`: that part was read as zeros, as QEMU reads it.
    case snapshotTablePastEnd(offset: UInt64, fileSize: UInt64)
    /// Snapshot entry `index` (at `offset`) runs past the end of the file or the 64 MiB table limit.
    ///
    /// `entrySize` and `extraDataSize` are `nil` when not even the entry's 40 fixed bytes could be read.
    case snapshotEntryTruncated(index: Int, offset: UInt64, entrySize: UInt64?, extraDataSize: UInt64?)
    /// Snapshot entry `index` (at `offset`, with `extraDataSize` bytes of extra data) cannot be decoded.
    case snapshotEntryUndecodable(index: Int, offset: UInt64, extraDataSize: UInt64)
}
