/// One compact counter per host cluster: a byte each, with the rare counts of 255 and more kept aside.
///
/// The refcount check keeps two of these (the refcounts stored in the image and the references it
/// found), so a host cluster costs it 2 bytes; a count reaches the side table only for clusters
/// referenced 255 times or more, which takes at least as many table entries read.
struct ClusterCounts {
    private var bytes: [UInt8]
    private var large: [Int: UInt64] = [:]

    /// `count` counters, all zero.
    init(count: Int) {
        bytes = [UInt8](repeating: 0, count: count)
    }

    /// The number of counters.
    var count: Int { bytes.count }

    /// The counter of cluster `i` (`i` must be below ``count``).
    subscript(i: Int) -> UInt64 {
        get {
            let b = bytes[i]
            return b == .max ? large[i] ?? UInt64(b) : UInt64(b)
        }
        set {
            if newValue < UInt64(UInt8.max) {
                if bytes[i] == .max { large[i] = nil }
                bytes[i] = UInt8(newValue)
            } else {
                bytes[i] = .max
                large[i] = newValue
            }
        }
    }
}
