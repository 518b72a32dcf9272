import HTTPTypes
import MicroHTTPD
import QCOW2API
import Synchronization

/// The daemon's hot path: answers that may be given again (``Reuse``) kept as prepared libmicrohttpd
/// responses by request target, and given on libmicrohttpd's thread without building a request head,
/// routing, rendering or copying anything.
///
/// A request is answered here only when the API would give the same bytes: its `Host` is allowed, it
/// has no `Origin` while CORS is configured, its token is accepted where one is needed, and
/// ``API/isCurrent(_:batch:)`` says the image (and its lock state) did not change; `If-None-Match` picks the
/// kept `304`. Anything else goes the usual way (``Service``), which offers its answer back
/// (``offer(_:_:)``). Requests answered here are counted and logged as every other one.
final class HotAnswers: Sendable {
    /// An answer kept for one request target (a class: one reference to take out of the table).
    final class Entry: Sendable {
        let ok: PreparedResponse
        let notModified: PreparedResponse?
        let reuse: Reuse
        let route: Route?
        /// The target without its query, as the access log shows it.
        let path: Substring
        /// The `Host` of the request the answer was made for (the API allowed it): the same value needs
        /// no second look at the host policy.
        let host: [UInt8]?

        init(ok: PreparedResponse, notModified: PreparedResponse?, reuse: Reuse, route: Route?, path: Substring, host: [UInt8]?) {
            self.ok = ok
            self.notModified = notModified
            self.reuse = reuse
            self.route = route
            self.path = path
            self.host = host
        }
    }

    /// Targets kept at most, and bytes of bodies; past either everything is dropped and kept anew.
    /// Small on purpose: a kept answer is a second copy of a body (libmicrohttpd's), and the daemon
    /// must fit in 64 MiB with hostile images (Tests/Reliability/limits.py).
    static let maxEntries = 1024
    static let maxBytes = 2 << 20
    /// Larger bodies are not kept (they cost their copy more than the lookup).
    static let maxBody = 64 << 10
    /// Longer targets are not kept.
    static let maxTarget = 1024

    private struct State {
        var entries: [String: Entry] = [:]
        var bytes = 0
    }

    private let state = Mutex(State())
    private let api: API
    private let metrics: DaemonMetrics
    private let accessLog: AccessLogWriter
    private let token: BearerToken?

    init(api: API, metrics: DaemonMetrics, accessLog: AccessLogWriter, token: BearerToken?) {
        self.api = api
        self.metrics = metrics
        self.accessLog = accessLog
        self.token = token
    }

    /// The prepared answer to `request`, counted and logged, or nil to send it the usual way.
    func answer(_ request: borrowing HotRequest) -> PreparedResponse? {
        let clock = ContinuousClock()
        let start = clock.now
        guard let entry = state.withLock({ $0.entries[request.target] }) else { return nil }
        if api.checksHost, !(entry.host.map { request.header("Host", is: $0) } ?? false), !api.allowsHost(request.header("Host")) {
            return nil
        }
        if api.variesWithOrigin, request.has("Origin") { return nil }
        var tokenName: String? = nil
        if api.checksToken {
            let authorization = request.header("Authorization")
            guard api.admits(entry.route, authorization: authorization) else { return nil }
            tokenName = token?.name(for: authorization)
        }
        guard api.isCurrent(entry.reuse, batch: request.batch) else {
            state.withLock { s in
                if let gone = s.entries.removeValue(forKey: request.target) { s.bytes -= gone.ok.bodyCount }
            }
            return nil
        }
        var prepared = entry.ok
        if let etag = entry.reuse.etag, let notModified = entry.notModified, let values = request.header("If-None-Match"),
            API.ifNoneMatch(values, matches: etag)
        {
            prepared = notModified
        }
        let elapsed = start.duration(to: clock.now)
        let method = request.isHead ? "HEAD" : "GET"
        metrics.recordRequest(route: entry.route, method: method, status: prepared.status, duration: elapsed)
        metrics.preparedAnswer()
        if let tokenName { metrics.recordToken(tokenName) }
        if accessLog.isOn {
            let address = request.address
            let micros = elapsed.components.seconds &* 1_000_000 &+ elapsed.components.attoseconds / 1_000_000_000_000
            accessLog.append(
                AccessLogWriter.Record(
                    method: method, path: entry.path, status: prepared.status, bytes: prepared.bodyCount, micros: micros,
                    remote: "", address: address, token: tokenName, uid: address == nil ? request.peerUID : nil,
                    certificate: nil))
        }
        return prepared
    }

    /// The part of `target` before its first `?`.
    static func path(of target: String) -> Substring {
        guard let q = target.utf8.firstIndex(of: 0x3F) else { return Substring(target) }
        return target[..<q]
    }

    /// Keeps `response` for its request's target when the API marked it reusable and the request was a
    /// plain one (`GET` or `HEAD`, no `Origin` while CORS is configured, a target of at most ``maxTarget`` bytes).
    func offer(_ request: HTTPRequest, _ response: Response) {
        guard let reuse = response.reuse, response.status == 200, request.method == .get || request.method == .head,
            let target = request.path, target.utf8.count <= Self.maxTarget, response.body.count <= Self.maxBody,
            !(api.variesWithOrigin && request.headerFields[.origin] != nil),
            let ok = PreparedResponse(response.head, body: response.body)
        else { return }
        let notModified = reuse.etag == nil ? nil : API.notModified(response)
        let entry = Entry(
            ok: ok, notModified: notModified.flatMap { PreparedResponse($0.head, body: []) }, reuse: reuse,
            route: response.route, path: Self.path(of: target), host: request.authority.map { Array($0.utf8) })
        state.withLock { s in
            if s.entries.count >= Self.maxEntries || s.bytes + ok.bodyCount > Self.maxBytes {
                s.entries.removeAll(keepingCapacity: true)
                s.bytes = 0
            }
            if let old = s.entries.updateValue(entry, forKey: target) { s.bytes -= old.ok.bodyCount }
            s.bytes += ok.bodyCount
        }
    }
}
