import ArgumentParser
import QCOW2API

#if canImport(Glibc)
    import Glibc
#endif

/// One image of a remote daemon (`--server`): each document is the daemon's answer to the route's GET.
///
/// The body is read back into a ``JSONValue`` (key order and integers kept), so the command prints
/// exactly what it prints for the local file; the `Link: rel="next"` header gives the next page's
/// parameters, as ``Document/next`` does locally. A check still running (`202` with `Retry-After`) is
/// asked again until it answers, within the command's `--io-timeout`.
struct RemoteImage: ImageDocumentSource {
    let server: RemoteServer
    /// The image's name in the server's directory.
    let image: String

    var file: String { "\(server.name): \(image)" }

    func document(_ route: RouteID, bitmap: String?, index: UInt64?, _ parameters: Parameters) throws -> Document {
        try Self.fetch(Self.target(route, image: image, bitmap: bitmap, index: index, parameters), from: server, naming: file)
    }

    /// GETs `target` and reads the answer back into a document; a refusal or a transport failure is one
    /// stderr line naming `file` (the server, and the image when there is one) and an exit code.
    static func fetch(_ target: String, from server: RemoteServer, naming file: String) throws -> Document {
        while true {
            let reply: RemoteServer.Reply
            do throws(CLIFailure) {
                reply = try server.get(target)
            } catch {
                Terminal.error(error.message)
                throw ExitCode(1)
            }
            if reply.status == 202 {
                let seconds = reply.field("retry-after").flatMap { UInt32($0) } ?? 1
                usleep(min(max(seconds, 1), 5) * 1_000_000)
                continue
            }
            guard reply.status == 200 else { throw Self.failure(reply, server: server, file: file, target: target) }
            do throws(JSONParser.Failure) {
                let value = try JSONParser.parse(reply.body)
                return Document(value, next: reply.field("link").flatMap(Self.nextParameters))
            } catch {
                Terminal.error("\(server.name): the answer to \(target) is not a document: \(error)")
                throw ExitCode(1)
            }
        }
    }

    /// The route's path and query for these names and parameters.
    static func target(_ route: RouteID, image: String, bitmap: String? = nil, index: UInt64? = nil, _ parameters: Parameters) -> String {
        var target = RouteTable.route(route).path(image: Array(image.utf8), bitmap: Array((bitmap ?? "").utf8), index: index)
        let query = parameters.queryString
        if !query.isEmpty { target += "?" + query }
        return target
    }

    /// The query parameters of a `Link: <path?query>; rel="next"` value; nil when it is not one.
    static func nextParameters(_ link: String) -> [(name: String, value: String)]? {
        guard link.contains("rel=\"next\""), let open = link.firstIndex(of: "<"), let close = link.firstIndex(of: ">"),
            open < close, let q = link[open..<close].firstIndex(of: "?")
        else { return nil }
        guard let p = try? Parameters(query: link[link.index(after: q)..<close]) else { return nil }
        return p.items.map { ($0.name, String(decoding: $0.value, as: UTF8.self)) }
    }

    /// Prints the one line for a refused request (the problem's detail, naming the server and the
    /// image) and returns its exit code: 2 for a bad parameter (400), as the local usage error, else 1.
    static func failure(_ reply: RemoteServer.Reply, server: RemoteServer, file: String, target: String) -> ExitCode {
        var line = "\(file): HTTP \(reply.status) for \(target)"
        if let problem = try? JSONParser.parse(reply.body), case .string(let detail)? = problem["detail"] {
            line = "\(file): \(detail)"
            if case .string(let type)? = problem["type"], let slug = type.split(whereSeparator: { $0 == "/" || $0 == ":" }).last { line += " (\(slug))" }
        }
        Terminal.error(line)
        return ExitCode(reply.status == 400 ? 2 : 1)
    }
}

/// `--server` and what it takes to reach it: the arguments every view shares for a remote daemon.
struct ServerOptions: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "Ask this qcowscoped instead of reading the file: http://HOST:PORT, https://HOST:PORT, unix:/PATH (its Unix socket), or https+unix:/PATH (the socket of a daemon with TLS). FILE is then the image's name in the server's directory.",
            valueName: "url"))
    var server: String?

    @Option(help: ArgumentHelp("With --server: a file whose first line is the bearer token.", valueName: "file"))
    var tokenFile: String?

    @Option(help: ArgumentHelp("With --server https: the CA certificates (PEM) to verify the server with.", valueName: "file"))
    var cacert: String?

    @Option(help: ArgumentHelp("With --server https: a client certificate (PEM), for a daemon with --tls-client-ca.", valueName: "file"))
    var cert: String?

    @Option(help: ArgumentHelp("With --cert: its private key (PEM).", valueName: "file"))
    var key: String?

    func validate() throws {
        if server == nil && (tokenFile != nil || cacert != nil || cert != nil || key != nil) {
            throw ValidationError("--token-file, --cacert, --cert and --key need --server.")
        }
        if (cert == nil) != (key == nil) { throw ValidationError("--cert and --key go together.") }
    }

    /// The server, connected lazily; a bad option or token file is one stderr line and exit 1.
    func connect(timeout: Double) throws -> RemoteServer {
        do throws(CLIFailure) {
            return try RemoteServer(self, timeout: timeout)
        } catch {
            Terminal.error(error.message)
            throw ExitCode(1)
        }
    }
}
