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

/// One image file, with the daemon's own documents made for it directly (no HTTP, no JSON parsing).
///
/// The file's real path is split into its directory (an ``ImageCatalog``, which opens the file
/// `O_RDONLY` beneath it) and its name, so the CLI reads exactly as the daemon does.
struct ImageAccess: ImageDocumentSource {
    let file: String
    let documents: Documents
    let entry: ImageEntry
    let locks: LockState?

    /// Resolves `file`, opens its directory and parses it (probing QEMU's locks, taking none).
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
            documents = Documents(catalog: try ImageCatalog(path: dir, cacheCapacity: 1, watchChanges: false))
        } catch {
            throw CLIFailure(message: "\(file): \(error.message)")
        }
        do throws(DocumentError) {
            (entry, locks) = try documents.open(Array(name.utf8), probeLocks: true)
        } catch {
            throw Self.failure(error, file: file)
        }
    }

    /// The document of `route` for this image.
    func document(_ route: RouteID, bitmap: String?, index: UInt64?, _ parameters: Parameters) throws -> Document {
        do throws(DocumentError) {
            let plan = try documents.plan(
                route, entry: entry, locks: route == .locks || RouteTable.route(route).probesLocks ? locks : nil,
                bitmap: bitmap.map { Array($0.utf8) }, index: index, parameters: parameters)
            return try plan.render()
        } catch {
            if case .invalidParameter(let name, let value, let allowed) = error {
                Terminal.error("--\(name) must be \(Self.allowedText(allowed, value: value))")
                throw ExitCode(2)
            }
            Terminal.error(Self.failure(error, file: file).message)
            throw ExitCode(1)
        }
    }

    /// What the option accepts, in the CLI's words: `1...4096`, `>= 0`.
    static func allowedText(_ allowed: DocumentError.Allowed, value: String) -> String {
        switch allowed {
        case .range(let r) where r.upperBound == UInt64.max || value.hasPrefix("-"): ">= \(r.lowerBound)"
        case .range(let r): "\(r.lowerBound)...\(r.upperBound)"
        case .described(let d): d
        }
    }

    /// One stderr line for a document error, naming the file.
    static func failure(_ error: DocumentError, file: String) -> CLIFailure {
        switch error {
        case .unreadable(let e, _): CLIFailure(message: "\(file): \(e.description)")
        default: CLIFailure(message: "\(file): \(Problem(error).detail)")
        }
    }
}

/// `--format`.
enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case json
    case text
}

/// How a command prints and how long it may wait: `--format`, `--io-timeout`, and the `--server` options.
///
/// Shared by the views (``ViewOptions``) and `images`.
struct OutputOptions: ParsableArguments {
    @Option(help: "Output format: json or text (default: json when stdout is not a terminal, text on a terminal).")
    var format: OutputFormat?

    @Option(
        name: .customLong("io-timeout"),
        help: "Seconds the command may wait for the storage (with --server: the server) before it gives up with exit 1 (default 30).")
    var ioTimeout: Double = Watchdog.defaultSeconds

    @OptionGroup var remote: ServerOptions

    /// Prints `doc`: pretty JSON, or `text(doc)`, as `--format` says (default: JSON unless stdout is a terminal).
    func print(_ doc: JSONValue, text: (JSONValue) -> String) {
        let useJSON = (format ?? (Terminal.stdoutIsTerminal ? .text : .json)) == .json
        Terminal.print(useJSON ? JSONWriter(style: .pretty(indent: 2)).string(doc) + "\n" : text(doc))
    }
}

/// The arguments every view shares.
struct ViewOptions: ParsableArguments {
    @Argument(help: "The qcow2 image file (with --server: the image's name on the server).")
    var file: String

    @OptionGroup var output: OutputOptions

    /// Opens the image (or, with `--server`, names it on the server); a failure is one stderr line and exit 1.
    func open() throws -> any ImageDocumentSource {
        if output.remote.server != nil {
            let server = try output.remote.connect(timeout: output.ioTimeout)
            Watchdog.arm(seconds: output.ioTimeout, file: file, server: server.name)
            return RemoteImage(server: server, image: file)
        }
        Watchdog.arm(seconds: output.ioTimeout, file: file)
        do {
            return try ImageAccess(file: file)
        } catch {
            Terminal.error(error.message)
            throw ExitCode(1)
        }
    }

    /// Opens the image, makes its document with `body` and prints it.
    @discardableResult
    func show(_ body: (any ImageDocumentSource) throws -> JSONValue, text: (JSONValue) -> String = TextRenderer.render) throws
        -> JSONValue
    {
        let doc = try body(try open())
        output.print(doc, text: text)
        return doc
    }
}

/// A numeric option given as text, so that `--start -1` is read as a value and refused with a message
/// naming the option (`--start must be >= 0`) instead of "Missing value for '--start'".
struct NumberArgument: ExpressibleByArgument, Sendable {
    /// The text as given.
    var text: String

    init?(argument: String) { text = argument }

    /// Refuses a value that is not an unsigned integer in `range` (usage error, exit 2).
    static func check(_ value: NumberArgument?, _ option: String, _ range: ClosedRange<UInt64> = 0...UInt64.max) throws {
        guard let value else { return }
        let t = value.text
        guard !t.isEmpty, t.utf8.count <= 20, t.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let v = UInt64(t),
            range.contains(v)
        else {
            throw ValidationError("--\(option) must be \(ImageAccess.allowedText(.range(range), value: t))")
        }
    }
}
