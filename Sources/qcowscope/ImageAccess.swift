import ArgumentParser
import QCOW2
import QCOW2API

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// An error worth one line on stderr and exit status 1.
struct CLIFailure: Error {
    var message: String
}

/// One image file served through the same ``API`` the daemon uses, so both print the same documents.
///
/// The file's real path is split into its directory (an ``ImageCatalog``, which opens the file
/// `O_RDONLY` beneath it) and its name; views are then plain `GET` requests to the router.
struct ImageAccess {
    let file: String
    let api: API
    /// The image name, percent-encoded for a path segment.
    let segment: String

    /// Resolves `file` and opens its directory.
    init(file: String) throws(CLIFailure) {
        self.file = file
        guard let resolved = realpath(file, nil) else {
            throw CLIFailure(message: "\(file): \(String(cString: strerror(errno)))")
        }
        let path = String(cString: resolved)
        free(resolved)
        var st = stat()
        guard stat(path, &st) == 0 else {
            throw CLIFailure(message: "\(file): \(String(cString: strerror(errno)))")
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw CLIFailure(message: "\(file): not a regular file")
        }
        let slash = path.lastIndex(of: "/") ?? path.startIndex
        let dir = slash == path.startIndex ? "/" : String(path[..<slash])
        let name = String(path[path.index(after: slash)...])
        do {
            api = API(catalog: try ImageCatalog(path: dir, cacheCapacity: 1))
        } catch {
            throw CLIFailure(message: "\(file): \(error.message)")
        }
        segment = PercentEncoding.encode(name)
    }

    /// `GET /v1/images/{image}{suffix}?{query}`, parsed; a non-200 answer becomes its problem detail.
    func get(_ suffix: String, query: String = "") throws(CLIFailure) -> JSONValue {
        var target = "/v1/images/" + segment + suffix
        if !query.isEmpty { target += "?" + query }
        let response = api.handle(APIRequest(method: "GET", target: target))
        let doc = JSONParser.parse(response.body)
        guard response.status == 200, let doc else {
            if case .string(var detail)? = doc?["detail"] {
                // "'name' cannot be read as qcow2: ..." names the file already: say it once, as given.
                let quoted = "'" + String(decoding: PercentEncoding.decode(Substring(segment)) ?? [], as: UTF8.self) + "' "
                if detail.hasPrefix(quoted) { detail.removeFirst(quoted.count) }
                throw CLIFailure(message: "\(file): \(detail)")
            }
            throw CLIFailure(message: "\(file): HTTP \(response.status) for \(target)")
        }
        return doc
    }

    /// Follows `next` through every page of a paginated view and returns one document of the same shape.
    ///
    /// A single page is returned untouched (the daemon's document for that request). When there are more,
    /// the `items` arrays are concatenated, `next` becomes null and `limit` the number of items.
    func getAll(_ suffix: String, items: String, cursor: String, query: String = "", limit: UInt64? = nil)
        throws(CLIFailure) -> JSONValue
    {
        var first = try get(suffix, query: query)
        guard case .array(var all)? = first[items] else { return first }
        var pages = 1
        var next = first["next"]
        while let n = next, n != .null {
            let value: String
            switch n {
            case .string(let s): value = s
            case .uint(let u): value = String(u)
            default: return first
            }
            var q = "\(cursor)=\(PercentEncoding.encode(value))"
            if let limit { q += "&limit=\(limit)" }
            let page = try get(suffix, query: q)
            guard case .array(let more)? = page[items], !more.isEmpty else { break }
            all += more
            pages += 1
            next = page["next"]
        }
        if pages > 1 {
            first.set(items, .array(all))
            first.set("limit", .num(all.count))
            first.set("next", .null)
        }
        return first
    }
}

/// `--format`.
enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case json
    case text
}

/// The arguments every view shares.
struct ViewOptions: ParsableArguments {
    @Argument(help: "The qcow2 image file.")
    var file: String

    @Option(help: "Output format: json or text (default: json when stdout is not a terminal, text on a terminal).")
    var format: OutputFormat?

    /// Opens the image.
    func open() throws -> ImageAccess {
        do {
            return try ImageAccess(file: file)
        } catch {
            Terminal.error(error.message)
            throw ExitCode(1)
        }
    }

    /// Runs `body` and prints its document; a ``CLIFailure`` becomes one stderr line and exit 1.
    func show(_ body: (ImageAccess) throws(CLIFailure) -> JSONValue, text: (JSONValue) -> String = TextRenderer.render)
        throws -> JSONValue
    {
        let access = try open()
        let doc: JSONValue
        do {
            doc = try body(access)
        } catch {
            Terminal.error(error.message)
            throw ExitCode(1)
        }
        let useJSON = (format ?? (Terminal.stdoutIsTerminal ? .text : .json)) == .json
        Terminal.print(useJSON ? JSONWriter(style: .pretty(indent: 2)).string(doc) + "\n" : text(doc))
        return doc
    }
}
