extension ImageSource {
    /// The seek answer of a source without a descriptor: only offsets past `Int64.max` (no `off_t`) fail.
    public func seekFailure(at offset: UInt64) -> String? {
        offset <= UInt64(Int64.max) ? nil : "offset past 2^63 - 1"
    }
}

extension ImageSource {
    /// A source without a descriptor holds data everywhere.
    public func region(at offset: UInt64) -> HostRegion { .unknown }

    /// Bytes the file occupies on disk (`st_blocks * 512`); for a source without a file, its size.
    public var allocatedBytes: UInt64 { size }
}
