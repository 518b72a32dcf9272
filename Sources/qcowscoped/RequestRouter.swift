import MicroHTTPD
import QCOW2API

/// The seam between transport and API: maps a MicroHTTPD request to `QCOW2API.API` and back.
///
/// Nothing here knows about qcow2 or routes; `HEAD` gets the response of `GET` and the server
/// drops the body (keeping `Content-Length`).
struct RequestRouter: Sendable {
    /// The API over the images directory.
    let api: API

    /// Answers one request on libmicrohttpd's thread.
    @Sendable func handle(_ request: HTTPRequest) -> HTTPResponse {
        let r = api.handle(
            APIRequest(
                method: request.method, rawPath: request.rawPath, rawQuery: request.rawQuery ?? "",
                headers: request.headers))
        return HTTPResponse(status: r.status, headers: r.headers, body: r.body)
    }
}
