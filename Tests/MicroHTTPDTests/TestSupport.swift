import Foundation
import Glibc
import HTTPTypes
import MicroHTTPD
import Synchronization

/// Starts a server on the given addresses with a small configuration suited to tests.
func startServer(
    _ addresses: [String] = ["127.0.0.1:0"],
    configure: (inout HTTPServerConfiguration) -> Void = { _ in },
    handler: @escaping HTTPHandler = echo
) throws -> HTTPServer {
    var configuration = HTTPServerConfiguration(
        listenAddresses: try addresses.map { address throws(HTTPServerError) in try ListenAddress(parsing: address) },
        threadPoolSize: 2, connectionTimeoutSeconds: 10)
    configure(&configuration)
    return try HTTPServer(configuration: configuration, handler: handler)
}

/// A handler that describes the request it got: `METHOD rawPath ?rawQuery remote`, as text/plain.
@Sendable func echo(_ request: HTTPRequest, _ client: ClientInfo) -> (head: HTTPResponse, body: [UInt8]) {
    let target = request.path ?? ""
    let halves = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
    let rawPath = halves.first.map(String.init) ?? ""
    let rawQuery = halves.count > 1 ? String(halves[1]) : nil
    if rawPath == "/slow" {
        var pause = timespec(tv_sec: 0, tv_nsec: 500_000_000)
        nanosleep(&pause, nil)
    }
    let text = "\(request.method.rawValue) \(rawPath) ?\(rawQuery ?? "<none>") \(client.remoteAddress)"
    if request.method != .get && request.method != .head {
        return (
            HTTPResponse(status: .methodNotAllowed, headerFields: [.allow: "GET, HEAD", .contentType: "text/plain"]),
            Array(text.utf8)
        )
    }
    var fields: HTTPFields = [.contentType: "text/plain"]
    if let echo = HTTPField.Name("X-Echo") { fields[echo] = "1" }
    return (HTTPResponse(status: .ok, headerFields: fields), Array(text.utf8))
}

/// A fixed answer: `status`, the given fields, `body`.
func reply(_ status: Int, _ fields: HTTPFields = [:], _ body: String = "") -> (head: HTTPResponse, body: [UInt8]) {
    (HTTPResponse(status: .init(code: status), headerFields: fields), Array(body.utf8))
}

/// Runs `body` on a new thread (blocking socket code must not sit on the cooperative pool).
func onThread(_ body: @escaping @Sendable () -> Void) {
    Thread { body() }.start()
}

/// Polls `condition` every 5 ms until it holds or `seconds` pass; returns whether it held.
func eventually(within seconds: Double = 5, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if condition() { return true }
        usleep(5000)
    }
    return condition()
}

/// A value several threads write once and the test reads at the end.
final class Box<Value: Sendable>: Sendable {
    /// The guarded value.
    let value: Mutex<Value>
    /// Creates a box holding `initial`.
    init(_ initial: Value) { value = Mutex(initial) }
}
