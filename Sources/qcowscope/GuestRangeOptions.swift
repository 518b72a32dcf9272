import ArgumentParser
import QCOW2API

/// The guest range and page size of the extent commands (`extents`, `map`): `--start`, `--length`, `--limit`.
///
/// Both routes page the same way (1,000 extents by default, at most 10,000).
struct GuestRangeOptions: ParsableArguments {
    static let paging = RouteTable.route(.map).paging ?? PageLimits(default: 1000, maximum: 10000)

    @Option(parsing: .unconditional, help: "First guest byte (default 0).")
    var start: NumberArgument?

    @Option(parsing: .unconditional, help: "Number of guest bytes (default: to the end of the disk).")
    var length: NumberArgument?

    @Option(parsing: .unconditional, help: "Extents per page, 1...\(Self.paging.maximum) (default \(Self.paging.defaultLimit)).")
    var limit: NumberArgument?

    func validate() throws {
        try NumberArgument.check(start, "start")
        try NumberArgument.check(length, "length", 1...UInt64.max)
        try NumberArgument.check(limit, "limit", Self.paging.range)
    }

    /// `start` and `length` as query parameters, and `limit` when given (else `pageLimit`, when given).
    func query(pageLimit: UInt64? = nil) -> [(name: String, value: String)] {
        var q: [(name: String, value: String)] = []
        if let start { q.append(("start", start.text)) }
        if let length { q.append(("length", length.text)) }
        if let limit {
            q.append(("limit", limit.text))
        } else if let pageLimit {
            q.append(("limit", String(pageLimit)))
        }
        return q
    }
}
