import ArgumentParser
import QCOW2API

/// The paging options of the table commands (`table`, `l1`, `l2`): `--offset`, `--limit`, `--all`.
///
/// The three routes share their page limits (256 by default, at most 4096).
struct TablePageOptions: ParsableArguments {
    static let paging = RouteTable.route(.table).paging ?? PageLimits(default: 256, maximum: 256)

    @Option(parsing: .unconditional, help: "Index of the first table entry (default 0).")
    var offset: NumberArgument?

    @Option(parsing: .unconditional, help: "Entries per page, 1...\(Self.paging.maximum) (default \(Self.paging.defaultLimit)).")
    var limit: NumberArgument?

    @Flag(help: "Print every entry (pages of \(Self.paging.maximum) joined into one document).")
    var all = false

    func validate() throws {
        if all && (offset != nil || limit != nil) {
            throw ValidationError("--all cannot be combined with --offset or --limit.")
        }
        try NumberArgument.check(offset, "offset")
        try NumberArgument.check(limit, "limit", Self.paging.range)
    }

    /// The page (or, with `--all`, every page joined) of `route`.
    func document(_ a: any ImageDocumentSource, _ route: RouteID, bitmap: String? = nil, index: UInt64? = nil) throws -> JSONValue {
        if all {
            let first = Parameters([("offset", "0"), ("limit", String(Self.paging.maximum))])
            return try a.all(route, bitmap: bitmap, index: index, first, items: "entries")
        }
        var q: [(name: String, value: String)] = []
        if let offset { q.append(("offset", offset.text)) }
        if let limit { q.append(("limit", limit.text)) }
        return try a.document(route, bitmap: bitmap, index: index, Parameters(q)).value
    }
}

/// `qcowscope l1 FILE` (`GET /v1/images/{image}/l1`).
struct L1Command: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "l1", abstract: "One page of the L1 table, or all of it (GET /v1/images/{image}/l1).",
        discussion: "Example: qcowscope l1 vm1.qcow2 --limit 16 --format text")

    @OptionGroup var options: ViewOptions
    @OptionGroup var page: TablePageOptions

    func run() throws {
        try options.show { a in try page.document(a, .l1) }
    }
}

/// `qcowscope l2 FILE INDEX` (`GET /v1/images/{image}/l1/{index}/l2`).
struct L2Command: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "l2",
        abstract: "One page of the L2 table an L1 entry points at, or all of it (GET /v1/images/{image}/l1/{index}/l2).",
        discussion: "Example: qcowscope l2 vm1.qcow2 0 --offset 0 --limit 32 --format text")

    @OptionGroup var options: ViewOptions

    @Argument(help: "The L1 index (0...l1_size-1).")
    var index: NumberArgument

    @OptionGroup var page: TablePageOptions

    func validate() throws {
        try NumberArgument.check(index, "index")
    }

    func run() throws {
        let i = UInt64(index.text) ?? 0
        try options.show { a in try page.document(a, .l2, index: i) }
    }
}
