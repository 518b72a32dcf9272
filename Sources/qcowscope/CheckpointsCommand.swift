import ArgumentParser
import QCOW2API

/// `qcowscope checkpoints FILE [NAME]` (`GET /v1/images/{image}/checkpoints[/{name}[/extents]]`):
/// incremental-backup readiness of the chain's bitmaps, offline.
struct CheckpointsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "checkpoints",
        abstract: "Incremental-backup readiness of the bitmaps across the backing chain (GET /v1/images/{image}/checkpoints).",
        discussion: """
            Without NAME: every bitmap name found in any layer of the chain, each with its layers, its \
            verdict (incremental_ready) and the K rules behind it (every page joined). With NAME: that \
            checkpoint's verdict and what a backup since it reads (dirty_bytes, backup_bytes, zero_bytes), \
            merged with the --with names. With NAME and --extents: the union's dirty and clean runs over \
            [--start, --start + --length), every page joined unless --limit is given.
            Exit status: 0 when every checkpoint shown is ready, 1 when one is not (or on an error), 2 usage error.
            Example: qcowscope checkpoints vm1.qcow2 backup-3 --with backup-4 --format json | jq .backup_bytes
            """)

    @OptionGroup var options: ViewOptions

    @Argument(help: "A checkpoint (bitmap) name; all of them when omitted.")
    var name: String?

    @Option(name: .customLong("with"), help: "A further bitmap name to merge (repeatable), for a backup since NAME when later checkpoints have their own bitmaps.")
    var with: [String] = []

    @Flag(help: "Print the union's extents instead of the verdict (needs NAME).")
    var extents = false

    @OptionGroup var range: GuestRangeOptions

    func validate() throws {
        if name == nil && (extents || !with.isEmpty) { throw ValidationError("--extents and --with need a checkpoint NAME.") }
        if !extents && (range.start != nil || range.length != nil || range.limit != nil) {
            throw ValidationError("--start, --length and --limit need --extents.")
        }
    }

    func run() throws {
        let withPairs = with.map { (name: "with", value: $0) }
        let doc = try options.show(
            { a in
                guard let name else { return try a.all(.checkpoints, Parameters(), items: "checkpoints") }
                if extents {
                    let q = range.query(pageLimit: range.limit == nil ? GuestRangeOptions.paging.maximum : nil) + withPairs
                    if range.limit != nil { return try a.document(.checkpointExtents, bitmap: name, Parameters(q)).value }
                    return try a.all(.checkpointExtents, bitmap: name, Parameters(q), items: "extents", merge: ExtentsCommand.merge)
                }
                return try a.document(.checkpoint, bitmap: name, Parameters(withPairs)).value
            }, text: extents ? ExtentsCommand.text : TextRenderer.render)
        var ready = true
        if case .array(let items)? = doc["checkpoints"] {
            ready = items.allSatisfy { $0["incremental_ready"] == .bool(true) }
        } else if doc["incremental_ready"] == .bool(false) {
            ready = false
        }
        if !ready { throw ExitCode(1) }
    }
}
