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

    /// Where each page starts in ``storage``, -1 for a page never written.
    private var directory: [Int]
    /// The allocated pages, one after the other.
    private var storage: [UInt8] = []
    private var large: [Int: UInt64] = [:]
    /// The number of counters.
    let count: Int

    /// `count` counters, all zero; no page is allocated yet. Room for `maxPages` pages is reserved
    /// (address space only: a page costs memory when it is first written), so the storage never moves.
    init(count: Int, maxPages: Int = 0) {
        self.count = count
        let pages = (count + Self.pageSize - 1) >> Self.pageBits
        directory = [Int](repeating: -1, count: pages)
        storage.reserveCapacity(min(pages, maxPages) << Self.pageBits)
    }

    /// Pages allocated so far.
    var pagesAllocated: Int { storage.count >> Self.pageBits }

    /// Bytes of counters allocated so far.
    var allocatedBytes: UInt64 { UInt64(storage.count) }

    /// Whether the page holding counter `i` was ever written (all its counters are zero otherwise).
    func hasPage(of i: Int) -> Bool { directory[i >> Self.pageBits] >= 0 }

    /// The counter of cluster `i` (`i` must be below ``count``).
    subscript(i: Int) -> UInt64 {
        let start = directory[i >> Self.pageBits]
        guard start >= 0 else { return 0 }
        let b = storage[start + (i & (Self.pageSize - 1))]
        return b == .max ? large[i] ?? UInt64(b) : UInt64(b)
    }

    /// The slot of counter `i` in ``storage``, allocating its page; nil past `pageLimit` pages.
    private mutating func slot(_ i: Int, pageLimit: Int) -> Int? {
        let p = i >> Self.pageBits
        var start = directory[p]
        if start < 0 {
            guard pagesAllocated < pageLimit else { return nil }
            start = storage.count
            storage.append(contentsOf: repeatElement(0, count: Self.pageSize))
            directory[p] = start
        }
        return start + (i & (Self.pageSize - 1))
    }

    /// What ``increment(_:max:pageLimit:)`` did.
    enum Increment {
        case done, atMax, noMemory
    }

    /// Adds one to counter `i`, unless it already holds `max` or a new page would pass `pageLimit`.
    mutating func increment(_ i: Int, max: UInt64, pageLimit: Int) -> Increment {
        guard let s = slot(i, pageLimit: pageLimit) else { return .noMemory }
        let b = storage[s]
        if b < UInt8.max - 1 {
            if UInt64(b) >= max { return .atMax }
            storage[s] = b + 1
            return .done
        }
        let v = b == .max ? large[i] ?? UInt64(b) : UInt64(b)
        if v >= max { return .atMax }
        storage[s] = .max
        large[i] = v + 1
        return .done
    }

    /// Sets counter `i`; `false` (and nothing set) when that needs a new page and `pageLimit` pages
    /// are already allocated.
    mutating func set(_ i: Int, _ value: UInt64, pageLimit: Int) -> Bool {
        if value == 0 && !hasPage(of: i) { return true }
        guard let s = slot(i, pageLimit: pageLimit) else { return false }
        if value < UInt64(UInt8.max) {
            if storage[s] == .max { large[i] = nil }
            storage[s] = UInt8(value)
        } else {
            storage[s] = .max
            large[i] = value
        }
        return true
    }
}
