import ArgumentParser
import QCOW2API

/// `qcowscope info FILE`: the summary (`GET /v1/images/{image}`).
struct InfoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info", abstract: "Summary in qemu-img's vocabulary (GET /v1/images/{image}).",
        discussion: "Example: qcowscope info vm1.qcow2 | jq '.bitmaps[] | {name, dirty_bytes}'")

    @OptionGroup var options: ViewOptions

    func run() throws {
        try options.show { try $0.document(.summary).value }
    }
}

/// `qcowscope header FILE` (`GET /v1/images/{image}/header`).
struct HeaderCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "header", abstract: "Every header field, decoded (GET /v1/images/{image}/header).",
        discussion: "Example: qcowscope header vm1.qcow2 --format text")

    @OptionGroup var options: ViewOptions

    func run() throws {
        try options.show { try $0.document(.header).value }
    }
}

/// `qcowscope extensions FILE` (`GET /v1/images/{image}/extensions`).
struct ExtensionsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "extensions", abstract: "Header extensions, decoded (GET /v1/images/{image}/extensions).",
        discussion: "Example: qcowscope extensions vm1.qcow2 | jq -r '.[] | \"\\(.magic) \\(.name)\"'")

    @OptionGroup var options: ViewOptions

    func run() throws {
        try options.show { try $0.document(.extensions).value }
    }
}

/// `qcowscope bitmaps FILE` (`GET /v1/images/{image}/bitmaps`, every page).
struct BitmapsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bitmaps",
        abstract: "The bitmaps extension and every bitmap directory entry (GET /v1/images/{image}/bitmaps).",
        discussion: """
            All bitmaps are printed: with up to 1000 bitmaps this is the daemon's first page as is; with \
            more, the pages are joined into one document of the same shape (next null).

            Example: qcowscope bitmaps vm1.qcow2 | jq -r '.bitmaps[] | "\\(.name) \\(.dirty_bytes)"'
            """)

    static let paging = RouteTable.route(.bitmaps).paging ?? PageLimits(default: 1000, maximum: 1000)

    @OptionGroup var options: ViewOptions

    func run() throws {
        try options.show { try $0.all(.bitmaps, Parameters(), items: "bitmaps") }
    }
}

/// `qcowscope table FILE BITMAP` (`GET /v1/images/{image}/bitmaps/{bitmap}/table`).
struct TableCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "table",
        abstract: "One page of a bitmap's table, or all of it (GET /v1/images/{image}/bitmaps/{bitmap}/table).",
        discussion: "Example: qcowscope table vm1.qcow2 backup-1 --offset 256 --limit 16 --format text")

    @OptionGroup var options: ViewOptions

    @Argument(help: "The bitmap name, or @index:N for directory entry N (the `address` of /bitmaps; for an empty or repeated name).")
    var bitmap: String

    @OptionGroup var page: TablePageOptions

    func run() throws {
        try options.show { a in try page.document(a, .table, bitmap: bitmap) }
    }
}

/// `qcowscope snapshots FILE` (`GET /v1/images/{image}/snapshots`, every page).
struct SnapshotsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapshots", abstract: "The internal snapshot table (GET /v1/images/{image}/snapshots).",
        discussion: "Example: qcowscope snapshots vm1.qcow2 --format text")

    @OptionGroup var options: ViewOptions

    func run() throws {
        try options.show { try $0.all(.snapshots, Parameters(), items: "snapshots") }
    }
}

/// `qcowscope findings FILE` (`GET /v1/images/{image}/findings`); exit 1 when an error-severity finding exists.
struct FindingsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "findings",
        abstract: "Every rule the image breaks (GET /v1/images/{image}/findings).",
        discussion: """
            Every finding, all pages joined into one document (next null). Exits 1 when at least one \
            finding has severity error, 0 otherwise.

            Example: qcowscope findings vm1.qcow2 --format text || echo "vm1.qcow2 has errors"
            """)

    @OptionGroup var options: ViewOptions

    func run() throws {
        let doc = try options.show { try $0.all(.findings, Parameters(), items: "findings") }
        if case .uint(let n)? = doc["counts"]?["error"], n > 0 { throw ExitCode(1) }
    }
}

/// `qcowscope extents FILE BITMAP` (`GET /v1/images/{image}/bitmaps/{bitmap}/extents`).
struct ExtentsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "extents",
        abstract: "Dirty and clean extents of a bitmap (GET /v1/images/{image}/bitmaps/{bitmap}/extents).",
        discussion: """
            Prints the daemon's document for the same query: one page of up to --limit extents (default \
            \(Self.paging.defaultLimit)) of guest bytes [--start, --start + --length), clipped to the disk, with \
            `next` the cursor of the following page. With --all, pages of \(Self.paging.maximum) are \
            followed and joined into one document of the same shape (next null). The text form is one \
            aligned `start length dirty` row per extent and a total line.

            Example: qcowscope extents vm1.qcow2 backup-1 --start 0 --length 1073741824 --all --format text
            """)

    static let paging = RouteTable.route(.extents).paging ?? PageLimits(default: 1000, maximum: 1000)

    @OptionGroup var options: ViewOptions

    @Argument(help: "The bitmap name, or @index:N for directory entry N (the `address` of /bitmaps; for an empty or repeated name).")
    var bitmap: String

    @OptionGroup var range: GuestRangeOptions

    @Flag(help: "Print every extent of the range (pages of \(Self.paging.maximum) joined into one document).")
    var all = false

    func validate() throws {
        if all && range.limit != nil { throw ValidationError("--all cannot be combined with --limit.") }
    }

    func run() throws {
        let parameters = Parameters(range.query(pageLimit: all ? Self.paging.maximum : nil))
        try options.show(
            { a in
                all
                    ? try a.all(.extents, bitmap: bitmap, parameters, items: "extents", merge: Self.merge)
                    : try a.document(.extents, bitmap: bitmap, parameters).value
            }, text: Self.text)
    }

    /// Two runs that meet at a page boundary with the same state, as one run; nil otherwise.
    static func merge(_ last: JSONValue, _ e: JSONValue) -> JSONValue? {
        guard last["dirty"] == e["dirty"], case .uint(let ls)? = last["start"], case .uint(let ll)? = last["length"],
            case .uint(let s)? = e["start"], ls &+ ll == s, case .uint(let l)? = e["length"]
        else { return nil }
        var joined = last
        joined.set("length", .num(ll &+ l))
        return joined
    }

    /// The document's fields as aligned `key value` lines, then one right-aligned `start length dirty`
    /// row per extent and a total line.
    static func text(_ doc: JSONValue) -> String {
        guard case .object(let pairs) = doc, case .array(let extents)? = doc["extents"] else {
            return TextRenderer.render(doc)
        }
        var out = TextRenderer.render(.object(pairs.filter { $0.0 != "extents" }))
        var rows: [(String, String, String)] = [("start", "length", "dirty")]
        var covered: UInt64 = 0
        var dirty: UInt64 = 0
        for e in extents {
            guard case .uint(let s)? = e["start"], case .uint(let l)? = e["length"], case .bool(let d)? = e["dirty"] else {
                continue
            }
            rows.append((String(s), String(l), d ? "dirty" : "clean"))
            covered += l
            if d { dirty += l }
        }
        let w0 = rows.map(\.0.count).max() ?? 0
        let w1 = rows.map(\.1.count).max() ?? 0
        func pad(_ s: String, _ w: Int) -> String { String(repeating: " ", count: w - s.count) + s }
        out += "extents:\n"
        for r in rows { out += "  " + pad(r.0, w0) + "  " + pad(r.1, w1) + "  " + r.2 + "\n" }
        let percent = covered == 0 ? 0 : Double(dirty) * 100 / Double(covered)
        let more = doc["next"].map { $0 != .null } ?? false
        out += "total: \(rows.count - 1) extent\(rows.count == 2 ? "" : "s"), \(dirty) dirty bytes of \(covered)"
        out += " (" + percentText(percent) + "%)" + (more ? " in this page; more from `next`" : "") + "\n"
        return out
    }

    /// `percent` with two decimals, without Foundation.
    static func percentText(_ percent: Double) -> String {
        let hundredths = Int((percent * 100).rounded())
        let frac = hundredths % 100
        return "\(hundredths / 100).\(frac < 10 ? "0" : "")\(frac)"
    }
}
