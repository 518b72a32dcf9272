import ArgumentParser
import QCOW2
import QCOW2API

#if canImport(Glibc)
    import Glibc
#endif

/// `qcowscope images [DIR]` or `qcowscope images --server URL` (`GET /v1/images`, every page).
struct ImagesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "images",
        abstract: "The images of a directory, or of a server's directory (GET /v1/images).",
        discussion: """
            Every page of the listing joined into one document (next null). JSON is the daemon's document; \
            text is one row per image: name, status, virtual size, bitmaps, findings (errors/warnings/info), \
            check state. With --server the check state is the server's (its scrubber checks in the background); \
            locally an image's check is pending until `qcowscope check` runs in the same process.
            Exit status: 0, or 1 when an image is unreadable or has errors.
            Example: qcowscope images --server https://host1:8741 --cacert ca.pem --token-file token --format text
            """)

    @Argument(help: "The images directory (default: the current one; not with --server).")
    var directory: String?

    @OptionGroup var output: OutputOptions

    func validate() throws {
        if output.remote.server != nil && directory != nil { throw ValidationError("Give a DIRECTORY or --server, not both.") }
    }

    func run() throws {
        let doc = try listing()
        output.print(doc, text: Self.text)
        guard case .array(let items)? = doc["images"] else { return }
        if items.contains(where: { $0["status"] == .string("unreadable") || $0["status"] == .string("errors") }) {
            throw ExitCode(1)
        }
    }

    /// Every page of the listing, joined.
    func listing() throws -> JSONValue {
        let page = PageLimits(default: 1000, maximum: 1000)
        let limit = String(RouteTable.route(.images).paging?.maximum ?? page.maximum)
        var fetch: (Parameters) throws -> Document
        if output.remote.server != nil {
            let server = try output.remote.connect(timeout: output.ioTimeout)
            Watchdog.arm(seconds: output.ioTimeout, file: "/v1/images", server: server.name)
            fetch = { p in try RemoteImage.fetch(RemoteImage.target(.images, image: "", p), from: server, naming: server.name) }
        } else {
            let dir = directory ?? "."
            Watchdog.arm(seconds: output.ioTimeout, file: dir)
            let documents: Documents
            do {
                documents = Documents(catalog: try ImageCatalog(path: dir, cacheCapacity: 64, watchChanges: false))
            } catch {
                Terminal.error("\(dir): \(error.message)")
                throw ExitCode(1)
            }
            fetch = { p in
                do throws(DocumentError) { return try documents.listing(p) } catch {
                    Terminal.error("\(dir): \(Problem(error).detail)")
                    throw ExitCode(1)
                }
            }
        }
        let first = try fetch(Parameters([("limit", limit)]))
        var doc = first.value
        guard case .array(var all)? = doc["images"] else { return doc }
        var next = first.next
        var pages = 1
        while let n = next, pages < 1_000_000 {
            var p = Parameters([("limit", limit)])
            p.replace(with: n)
            let more = try fetch(p)
            guard case .array(let items)? = more.value["images"], !items.isEmpty else { break }
            all += items
            next = more.next
            pages += 1
        }
        doc.set("images", .array(all))
        doc.set("limit", .num(all.count))
        doc.set("next", .null)
        return doc
    }

    /// One aligned row per image.
    static func text(_ doc: JSONValue) -> String {
        guard case .array(let items)? = doc["images"] else { return TextRenderer.render(doc) }
        var rows: [[String]] = [["NAME", "STATUS", "VIRTUAL SIZE", "BITMAPS", "FINDINGS E/W/I", "CHECK"]]
        func text(_ v: JSONValue?) -> String {
            switch v {
            case .uint(let n)?: String(n)
            case .string(let s)?: s
            default: "-"
            }
        }
        for i in items {
            let counts = i["finding_counts"].map { c in [text(c["error"]), text(c["warning"]), text(c["info"])].joined(separator: "/") }
            rows.append([
                text(i["name"]), text(i["status"]), text(i["virtual_size"]), text(i["bitmaps"]),
                counts == "-/-/-" ? "-" : counts ?? "-", text(i["check"]?["state"]),
            ])
        }
        let widths = (0..<6).map { c in rows.map { $0[c].count }.max() ?? 0 }
        var out = ""
        for r in rows {
            var line = ""
            for (c, cell) in r.enumerated() {
                let pad = String(repeating: " ", count: widths[c] - cell.count)
                line += c == 0 || c == 1 || c == 5 ? cell + pad : pad + cell
                if c < 5 { line += "  " }
            }
            while line.hasSuffix(" ") { line.removeLast() }
            out += line + "\n"
        }
        return out
    }
}
