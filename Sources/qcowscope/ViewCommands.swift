import ArgumentParser
import QCOW2API

/// `qcowscope info FILE`: the summary (`GET /v1/images/{image}`).
struct InfoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info", abstract: "Summary in qemu-img's vocabulary (GET /v1/images/{image}).")

    @OptionGroup var options: ViewOptions

    func run() throws {
        _ = try options.show { a throws(CLIFailure) in try a.get("") }
    }
}

/// `qcowscope header FILE` (`GET /v1/images/{image}/header`).
struct HeaderCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "header", abstract: "Every header field, decoded (GET /v1/images/{image}/header).")

    @OptionGroup var options: ViewOptions

    func run() throws {
        _ = try options.show { a throws(CLIFailure) in try a.get("/header") }
    }
}

/// `qcowscope extensions FILE` (`GET /v1/images/{image}/extensions`).
struct ExtensionsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "extensions", abstract: "Header extensions, decoded (GET /v1/images/{image}/extensions).")

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
        abstract: "One page of a bitmap's table, or all of it (GET /v1/images/{image}/bitmaps/{bitmap}/table).")

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
        commandName: "snapshots", abstract: "The internal snapshot table (GET /v1/images/{image}/snapshots).")

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
