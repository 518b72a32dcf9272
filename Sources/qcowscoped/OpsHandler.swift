import MicroHTTPD
import QCOW2API

/// What runs in front of the API on every request: bearer-token checks, the `/metrics` endpoint, and
/// the request metrics.
///
/// With a token configured every path needs `Authorization: Bearer <token>`, except `/healthz` and
/// `/metrics` when opened explicitly, and the static files of the web view (`/`, `/ui/...`), which hold
/// no image data (the API calls the page makes need the token). A missing or wrong token gets 401
/// `application/problem+json` with `WWW-Authenticate: Bearer realm="qcowscope"`, before the API sees
/// the request. Without a token nothing is checked.
struct OpsHandler: Sendable {
    /// The token, or nil when authentication is off.
    let token: BearerToken?
    /// Whether `/healthz` is served without a token.
    let openHealth: Bool
    /// Whether `/metrics` is served without a token.
    let openMetrics: Bool
    /// Request metrics and the exposition.
    let metrics: DaemonMetrics

    /// The realm named in `WWW-Authenticate`.
    static let realm = "qcowscope"

    /// A handler that checks the token, serves `/metrics`, calls `next` for everything else, and records
    /// every request's route pattern, method, status and duration.
    func wrap(_ next: @escaping @Sendable (HTTPRequest) -> HTTPResponse) -> @Sendable (HTTPRequest) -> HTTPResponse {
        let clock = ContinuousClock()
        return { request in
            let start = clock.now
            metrics.requestStarted()
            defer { metrics.requestEnded() }
            let endpoint = EndpointLabel.label(forRawPath: request.rawPath)
            let response = answer(request, endpoint: endpoint, next: next)
            metrics.recordRequest(
                endpoint: endpoint, method: request.method, status: response.status,
                duration: start.duration(to: clock.now))
            return response
        }
    }

    /// Whether requests to `endpoint` must carry the token (when one is configured).
    func needsToken(_ endpoint: String) -> Bool {
        switch endpoint {
        case "/healthz": !openHealth
        case EndpointLabel.metrics: !openMetrics
        case EndpointLabel.ui, "/": false
        default: true
        }
    }

    private func answer(
        _ request: HTTPRequest, endpoint: String, next: @Sendable (HTTPRequest) -> HTTPResponse
    ) -> HTTPResponse {
        if let token, needsToken(endpoint) {
            let authorization = request.header("Authorization")
            if !token.accepts(authorization: authorization) {
                return Self.unauthorized(request.rawPath, presented: authorization != nil)
            }
        }
        if endpoint == EndpointLabel.metrics { return metricsResponse(request) }
        return next(request)
    }

    /// `GET /metrics`: the Prometheus text exposition.
    private func metricsResponse(_ request: HTTPRequest) -> HTTPResponse {
        guard request.method == "GET" || request.method == "HEAD" else {
            return Self.problem(
                status: 405, slug: "method-not-allowed", title: "Method not allowed",
                detail: "\(request.method) is not allowed: this service is read-only (GET and HEAD)",
                instance: request.rawPath, headers: [("Allow", "GET, HEAD")])
        }
        return HTTPResponse(
            status: 200,
            headers: [
                ("Content-Type", DaemonMetrics.contentType), ("Cache-Control", "no-store"),
                ("X-Content-Type-Options", "nosniff"),
            ],
            body: metrics.exposition())
    }

    /// 401 with the bearer challenge (RFC 6750 §3): `error="invalid_token"` when a token was sent.
    static func unauthorized(_ path: String, presented: Bool) -> HTTPResponse {
        var challenge = "Bearer realm=\"\(realm)\""
        if presented { challenge += ", error=\"invalid_token\"" }
        return problem(
            status: 401, slug: "unauthorized", title: "Unauthorized",
            detail: presented
                ? "the bearer token is not valid"
                : "this endpoint needs an 'Authorization: Bearer <token>' header",
            instance: path, headers: [("WWW-Authenticate", challenge), ("Cache-Control", "no-store")])
    }

    /// An RFC 9457 problem response in the API's shape.
    static func problem(
        status: Int, slug: String, title: String, detail: String, instance: String,
        headers: [(name: String, value: String)]
    ) -> HTTPResponse {
        let body = JSONValue.obj([
            "type": .string("urn:qcowscope:problem:" + slug), "title": .string(title), "status": .num(status),
            "detail": .string(detail), "instance": .string(instance),
        ])
        return HTTPResponse(
            status: status,
            headers: [("Content-Type", "application/problem+json")] + headers + [("X-Content-Type-Options", "nosniff")],
            body: JSONWriter(style: .compact).bytes(body) + [0x0A])
    }
}
