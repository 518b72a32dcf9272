import ArgumentParser
import Glibc
import QCOW2API

/// `qcowscope map FILE` (`GET /v1/images/{image}/map`): the allocation map, as qemu-img map prints it.
struct MapCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "map",
        abstract: "The guest allocation map through the backing chain (GET /v1/images/{image}/map).",
        discussion: """
            JSON is the daemon's /map document; without --limit it holds the whole range (every page joined, \
            entries split at a page boundary merged), whose extents equal `qemu-img map --output=json`. Text is \
            qemu-img map's human table: data extents only, with the file that holds them.
            Example: qcowscope map vm1.qcow2 --start 0 --length 1073741824 --format json
            """)

    @OptionGroup var options: ViewOptions

    @OptionGroup var range: GuestRangeOptions

    @Option(help: "The `next` value of a previous page of the same query (with --limit; without it every page is printed).")
    var cursor: String?

    func validate() throws {
        if cursor != nil && range.limit == nil { throw ValidationError("--cursor needs --limit (the page size it was issued for).") }
    }

    func run() throws {
        var chain: JSONValue = .null
        var failed = false
        try options.show(
            { a in
                chain = try a.document(.chain).value
                var q = range.query(pageLimit: GuestRangeOptions.paging.maximum)
                if range.limit != nil {
                    if let cursor { q.append(("cursor", cursor)) }
                    return try a.document(.map, Parameters(q)).value
                }
                return try a.all(.map, Parameters(q), items: "extents", merge: Self.merge)
            },
            text: { doc in
                let (text, complete) = Self.human(doc, chain: chain)
                failed = !complete
                return text
            })
        if failed {
            Terminal.error("File contains external, encrypted or compressed clusters.")
            throw ExitCode(1)
        }
    }

    /// Joins two extents split at a page boundary, as qemu-img 7.2's entry_mergeable would have.
    static func merge(_ a: JSONValue, _ b: JSONValue) -> JSONValue? {
        guard case .uint(let s)? = a["start"], case .uint(let l)? = a["length"], case .uint(let t)? = b["start"],
            case .uint(let m)? = b["length"], s &+ l == t
        else { return nil }
        for k in ["depth", "present", "zero", "data"] where a[k] != b[k] { return nil }
        switch (a["offset"], b["offset"]) {
        case (nil, nil): break
        case (.uint(let o)?, .uint(let p)?) where o &+ l == p: break
        default: return nil
        }
        var joined = a
        joined.set("length", .uint(l &+ m))
        return joined
    }

    /// qemu-img map's human table: a header, then `start length offset file` for every data extent.
    ///
    /// - Returns: the text, and false when a data extent has no offset (compressed or encrypted),
    ///   where qemu-img stops with an error.
    static func human(_ doc: JSONValue, chain: JSONValue) -> (String, Bool) {
        // printf's %-16s and %#-16llx (0 prints as "0", others as 0x...).
        func pad(_ t: String) -> String { t.count >= 16 ? t : t + String(repeating: " ", count: 16 - t.count) }
        func hex(_ v: UInt64) -> String { pad(v == 0 ? "0" : "0x" + String(v, radix: 16)) }
        var out = pad("Offset") + pad("Length") + pad("Mapped to") + "File\n"
        guard case .array(let extents)? = doc["extents"] else { return (out, true) }
        var files: [UInt64: String] = [:]
        if case .array(let layers)? = chain["layers"] {
            for l in layers {
                guard case .uint(let d)? = l["depth"], case .string(let name)? = l["name"] else { continue }
                if case .string(let data)? = l["data_file"] { files[d] = data } else { files[d] = name }
            }
        }
        for e in extents {
            guard e["data"] == .bool(true), e["zero"] == .bool(false), case .uint(let start)? = e["start"],
                case .uint(let length)? = e["length"], case .uint(let depth)? = e["depth"]
            else { continue }
            guard case .uint(let offset)? = e["offset"] else { return (out, false) }
            out += hex(start) + hex(length) + hex(offset) + (files[depth] ?? "") + "\n"
        }
        return (out, true)
    }
}

/// `qcowscope chain FILE` (`GET /v1/images/{image}/chain`): the backing chain, confined to the file's directory.
struct ChainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chain",
        abstract: "The backing chain from the image down (GET /v1/images/{image}/chain).",
        discussion: """
            Backing and data files are followed only inside the image's directory; the chain ends, with an \
            error finding, at a missing file, a loop or past 64 layers. Exit status 1 when it ended early.
            Example: qcowscope chain overlay.qcow2 --format json
            """)

    @OptionGroup var options: ViewOptions

    func run() throws {
        let doc = try options.show { a in try a.document(.chain).value }
        if doc["complete"] == .bool(false) { throw ExitCode(1) }
    }
}

/// `qcowscope allocation FILE` (`GET /v1/images/{image}/allocation`): totals of the allocation map.
struct AllocationCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "allocation",
        abstract: "Totals of the allocation map through the backing chain (GET /v1/images/{image}/allocation).",
        discussion: """
            Each figure is the sum over the map's extents (qcowscope map): allocated + zero + unallocated bytes \
            is the virtual size. Exit status 1 when the totals are not known (past the walk's budget).
            Example: qcowscope allocation vm1.qcow2 --format json
            """)

    @OptionGroup var options: ViewOptions

    func run() throws {
        let doc = try options.show { a in try a.document(.allocation).value }
        if doc["known"] == .bool(false) { throw ExitCode(1) }
    }
}
