import MicroHTTPD

/// The placeholder routes: `/healthz` and problem+json errors.
///
/// This is the seam to the API layer. It will become a call to `QCOW2API`'s
/// `API.handle(method:rawPath:query:headers:)`, mapping its `(status, headers, body)` to an
/// ``HTTPResponse``; the rest of the daemon does not change.
enum RequestRouter {
    /// The methods every route accepts; anything else is 405.
    static let allowedMethods = "GET, HEAD"

    /// Answers one request.
    ///
    /// `HEAD` gets the same response as `GET` (the server drops the body).
    @Sendable static func handle(_ request: HTTPRequest) -> HTTPResponse {
        guard request.method == "GET" || request.method == "HEAD" else {
            return problem(
                status: 405, title: "Method Not Allowed",
                detail: "The method \(request.method) is not allowed; use GET or HEAD.",
                instance: request.rawPath, extraHeaders: [("Allow", allowedMethods)])
        }
        switch request.rawPath {
        case "/healthz":
            return HTTPResponse(
                status: 200, headers: [("Content-Type", "application/json"), ("Cache-Control", "no-store")],
                body: Array(#"{"status":"ok"}"#.utf8))
        default:
            return problem(
                status: 404, title: "Not Found", detail: "No resource exists at this path.",
                instance: request.rawPath)
        }
    }

    /// An RFC 9457 problem document with `type` `about:blank`.
    static func problem(
        status: Int, title: String, detail: String, instance: String,
        extraHeaders: [(name: String, value: String)] = []
    ) -> HTTPResponse {
        let body =
            #"{"type":"about:blank","title":"# + jsonString(title) + #","status":\#(status),"detail":"#
            + jsonString(detail) + #","instance":"# + jsonString(instance) + "}"
        return HTTPResponse(
            status: status, headers: [("Content-Type", "application/problem+json")] + extraHeaders,
            body: Array(body.utf8))
    }

    /// A JSON string literal, quotes included, with `"`, `\` and control characters escaped.
    static func jsonString(_ text: String) -> String {
        var result = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            case "\n": result += "\\n"
            case "\r": result += "\\r"
            case "\t": result += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                result += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: result.unicodeScalars.append(scalar)
            }
        }
        return result + "\""
    }
}
