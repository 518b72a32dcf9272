/// One compact counter per host cluster: a byte each, in pages allocated on first use, with the rare
/// counts of 255 and more kept aside.
///
/// The refcount check keeps two of these (the refcounts stored in the image and the references it
/// found), so a host cluster costs it at most 2 bytes, and only the ranges of the file that hold
/// something cost anything: a 1 TiB sparse file with a few clusters in use needs a few pages. A count
/// reaches the side table only for clusters referenced 255 times or more, which takes at least as many
/// table entries read.
struct ClusterCounts {
    /// log2 of the counters in a page (64 KiB pages).
    static let pageBits = 16
    static let pageSize = 1 << pageBits

    private var pages: [[UInt8]?]
    private var large: [Int: UInt64] = [:]
    /// The number of counters.
    let count: Int

    /// `count` counters, all zero; no page is allocated yet.
    init(count: Int) {
        self.count = count
        pages = [[UInt8]?](repeating: nil, count: (count + Self.pageSize - 1) >> Self.pageBits)
    }

    /// Pages allocated so far.
    private(set) var pagesAllocated = 0

    /// Bytes of counters allocated so far.
    var allocatedBytes: UInt64 { UInt64(pagesAllocated) << UInt64(Self.pageBits) }

    /// Whether the page holding counter `i` was ever written (all its counters are zero otherwise).
    func hasPage(of i: Int) -> Bool { pages[i >> Self.pageBits] != nil }

    /// The counter of cluster `i` (`i` must be below ``count``).
    subscript(i: Int) -> UInt64 {
        guard let page = pages[i >> Self.pageBits] else { return 0 }
        let b = page[i & (Self.pageSize - 1)]
        return b == .max ? large[i] ?? UInt64(b) : UInt64(b)
    }

    /// Sets counter `i`; `false` (and nothing set) when that needs a new page and `pageLimit` pages
    /// are already allocated.
    mutating func set(_ i: Int, _ value: UInt64, pageLimit: Int) -> Bool {
        let p = i >> Self.pageBits
        if pages[p] == nil {
            if value == 0 { return true }
            guard pagesAllocated < pageLimit else { return false }
            pages[p] = [UInt8](repeating: 0, count: Self.pageSize)
            pagesAllocated += 1
        }
        let j = i & (Self.pageSize - 1)
        if value < UInt64(UInt8.max) {
            if pages[p]?[j] == .max { large[i] = nil }
            pages[p]?[j] = UInt8(value)
        } else {
            pages[p]?[j] = .max
            large[i] = value
        }
        return true
    }
}
