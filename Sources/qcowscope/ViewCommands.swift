import ArgumentParser
import QCOW2API

/// `qcowscope info FILE`: the summary (`GET /v1/images/{image}`).
struct InfoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info", abstract: "Summary in qemu-img's vocabulary (GET /v1/images/{image}).",
        discussion: "Example: qcowscope info vm1.qcow2 | jq '.bitmaps[] | {name, dirty_bytes}'")

    @OptionGroup var options: ViewOptions

    func run() throws {
        _ = try options.show { a throws(CLIFailure) in try a.get("") }
    }
}

/// `qcowscope header FILE` (`GET /v1/images/{image}/header`).
struct HeaderCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "header", abstract: "Every header field, decoded (GET /v1/images/{image}/header).",
        discussion: "Example: qcowscope header vm1.qcow2 --format text")

    @OptionGroup var options: ViewOptions

    func run() throws {
        _ = try options.show { a throws(CLIFailure) in try a.get("/header") }
    }
}

/// `qcowscope extensions FILE` (`GET /v1/images/{image}/extensions`).
struct ExtensionsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "extensions", abstract: "Header extensions, decoded (GET /v1/images/{image}/extensions).",
        discussion: "Example: qcowscope extensions vm1.qcow2 | jq -r '.[] | \"\\(.magic) \\(.name)\"'")

    @OptionGroup var options: ViewOptions

    func run() throws {
        _ = try options.show { a throws(CLIFailure) in try a.get("/extensions") }
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
            """)

    @OptionGroup var options: ViewOptions

    func run() throws {
        _ = try options.show { a throws(CLIFailure) in
            try a.getAll("/bitmaps", items: "bitmaps", cursor: "cursor", limit: API.Paging.bitmaps.1)
        }
    }
}

/// `qcowscope table FILE BITMAP` (`GET /v1/images/{image}/bitmaps/{bitmap}/table`).
struct TableCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "table",
        abstract: "One page of a bitmap's table, or all of it (GET /v1/images/{image}/bitmaps/{bitmap}/table).",
        discussion: "Example: qcowscope table vm1.qcow2 backup-1 --offset 256 --limit 16 --format text")

    @OptionGroup var options: ViewOptions

    @Argument(help: "The bitmap name.")
    var bitmap: String

    @Option(help: "Index of the first table entry (default 0).")
    var offset: UInt64?

    @Option(help: "Entries per page, 1...\(API.Paging.table.1) (default \(API.Paging.table.0)).")
    var limit: UInt64?

    @Flag(help: "Print every entry (pages of \(API.Paging.table.1) joined into one document).")
    var all = false

    func validate() throws {
        if all && (offset != nil || limit != nil) {
            throw ValidationError("--all cannot be combined with --offset or --limit.")
        }
    }

    func run() throws {
        let suffix = "/bitmaps/" + PercentEncoding.encode(bitmap) + "/table"
        let maxPage = API.Paging.table.1
        _ = try options.show { a throws(CLIFailure) in
            if all {
                return try a.getAll(suffix, items: "entries", cursor: "offset", query: "offset=0&limit=\(maxPage)", limit: maxPage)
            }
            var q: [String] = []
            if let offset { q.append("offset=\(offset)") }
            if let limit { q.append("limit=\(limit)") }
            return try a.get(suffix, query: q.joined(separator: "&"))
        }
    }
}

/// `qcowscope snapshots FILE` (`GET /v1/images/{image}/snapshots`, every page).
struct SnapshotsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapshots", abstract: "The internal snapshot table (GET /v1/images/{image}/snapshots).",
        discussion: "Example: qcowscope snapshots vm1.qcow2 --format text")

    @OptionGroup var options: ViewOptions

    func run() throws {
        _ = try options.show { a throws(CLIFailure) in
            try a.getAll("/snapshots", items: "snapshots", cursor: "offset", limit: API.Paging.snapshots.1)
        }
    }
}

/// `qcowscope findings FILE` (`GET /v1/images/{image}/findings`); exit 1 when an error-severity finding exists.
struct FindingsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "findings",
        abstract: "Every rule the image breaks (GET /v1/images/{image}/findings).",
        discussion: "Exits 1 when at least one finding has severity error, 0 otherwise.")

    @OptionGroup var options: ViewOptions

    func run() throws {
        let doc = try options.show { a throws(CLIFailure) in try a.get("/findings") }
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
            \(API.Paging.extents.0)) of guest bytes [--start, --start + --length), clipped to the disk, with \
            `next` the cursor of the following page. With --all, pages of \(API.Paging.extents.1) are \
            followed and joined into one document of the same shape (next null). The text form is one \
            aligned `start length dirty` row per extent and a total line.
            """)

    @OptionGroup var options: ViewOptions

    @Argument(help: "The bitmap name.")
    var bitmap: String

    @Option(help: "First guest byte (default 0).")
    var start: UInt64?

    @Option(help: "Number of guest bytes (default: to the end of the disk).")
    var length: UInt64?

    @Option(help: "Extents per page, 1...\(API.Paging.extents.1) (default \(API.Paging.extents.0)).")
    var limit: UInt64?

    @Flag(help: "Print every extent of the range (pages of \(API.Paging.extents.1) joined into one document).")
    var all = false

    func validate() throws {
        if all && limit != nil { throw ValidationError("--all cannot be combined with --limit.") }
    }

    func run() throws {
        let suffix = "/bitmaps/" + PercentEncoding.encode(bitmap) + "/extents"
        var q: [String] = []
        if let start { q.append("start=\(start)") }
        if let length { q.append("length=\(length)") }
        if all {
            q.append("limit=\(API.Paging.extents.1)")
        } else if let limit {
            q.append("limit=\(limit)")
        }
        let query = q.joined(separator: "&")
        _ = try options.show(
            { a throws(CLIFailure) in
                all ? try Self.allPages(a, suffix, query: query) : try a.get(suffix, query: query)
            }, text: Self.text)
    }

    /// Follows `next` cursors (same start, length and limit) and joins the pages: the first page's
    /// document with every extent (runs meeting at a page boundary merged) and `next` null.
    static func allPages(_ a: ImageAccess, _ suffix: String, query: String) throws(CLIFailure) -> JSONValue {
        var doc = try a.get(suffix, query: query)
        guard case .array(var extents)? = doc["extents"] else { return doc }
        var next = doc["next"]
        var pages = 1
        while case .string(let cursor)? = next {
            let page = try a.get(suffix, query: (query.isEmpty ? "" : query + "&") + "cursor=" + PercentEncoding.encode(cursor))
            guard case .array(let more)? = page["extents"], !more.isEmpty else { break }
            for e in more {
                if var last = extents.last, last["dirty"] == e["dirty"], case .uint(let ls)? = last["start"],
                    case .uint(let ll)? = last["length"], case .uint(let s)? = e["start"], ls + ll == s,
                    case .uint(let l)? = e["length"]
                {
                    last.set("length", .num(ll + l))
                    extents[extents.count - 1] = last
                } else {
                    extents.append(e)
                }
            }
            pages += 1
            next = page["next"]
        }
        if pages > 1 {
            doc.set("extents", .array(extents))
            doc.set("next", .null)
        }
        return doc
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
