extension ImageSource {
    /// The seek answer of a source without a descriptor: only offsets past `Int64.max` (no `off_t`) fail.
    public func seekFailure(at offset: UInt64) -> String? {
        offset <= UInt64(Int64.max) ? nil : "offset past 2^63 - 1"
    }
}
