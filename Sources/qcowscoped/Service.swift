import HTTPTypes
import MicroHTTPD
import QCOW2API

/// What the daemon does with every request: hands it to the API, then counts and logs the answer.
///
/// The route was found once, by the API; its label (a route pattern, or `other`) names the request in
/// the metrics and the log. Nonisolated on purpose: it runs on libmicrohttpd's threads.
struct Service: Sendable {
    /// The API over the images directory.
    let api: API
    /// Request metrics.
    let metrics: DaemonMetrics
    /// The access log.
    let accessLog: AccessLogWriter
    /// The bearer tokens, to name the client in the log and the metrics (nil: no token configured).
    var token: BearerToken? = nil
    /// Whether HTTPS requests need a client certificate the configured CAs sign (`--tls-client-ca`).
    var requiresClientCertificate = false
    /// The hot path, offered every reusable answer (nil: none).
    var hot: HotAnswers? = nil

    /// Answers one request: at once when it reads no file, else from the API's I/O executor.
    ///
    /// Called on libmicrohttpd's thread, which it never blocks: file work is handed to the executor
    /// and `responder` answers when it is done or its deadline passed.
    func respond(_ request: HTTPRequest, _ client: ClientInfo, _ responder: HTTPResponder) {
        let clock = ContinuousClock()
        let start = clock.now
        metrics.requestStarted()
        // The token's name, never the token: which client asked, for the log line and the metrics.
        let tokenName = token?.name(for: request.headerFields[.authorization])
        let finish: @Sendable (Response) -> Void = { [metrics, accessLog, hot] response in
            hot?.offer(request, response)
            let elapsed = start.duration(to: clock.now)
            metrics.requestEnded()
            metrics.recordRequest(route: response.route, method: request.method.rawValue, status: response.status, duration: elapsed)
            if let tokenName { metrics.recordToken(tokenName) }
            AccessLog.record(request, response, client: client, elapsed: elapsed, token: tokenName, to: accessLog)
            responder.respond(response.head, body: response.body)
        }
        if requiresClientCertificate {
            switch client.certificate {
            case .verified?: break
            case .rejected?: return finish(api.clientCertificateRequired(request, presented: true))
            case .absent?, nil: return finish(api.clientCertificateRequired(request, presented: false))
            }
        }
        api.respond(request, answer: finish)
    }

    /// The answer while the server sheds load (the API's 503 problem), without counting or logging.
    func overloaded(_ request: HTTPRequest, _ client: ClientInfo) -> (head: HTTPResponse, body: [UInt8]) {
        let response = api.overloaded(request)
        return (response.head, response.body)
    }
}
