import HTTPTypes
import QCOW2API

/// A request as the tests write it: method, target (path and query, as sent) and header fields.
struct TestRequest {
    var method: String
    var target: String
    var headers: [(name: String, value: String)] = []

    init(method: String, target: String, headers: [(name: String, value: String)] = []) {
        self.method = method
        self.target = target
        self.headers = headers
    }

    /// The swift-http-types head the daemon's transport would hand to the API.
    var head: HTTPRequest {
        var fields = HTTPFields()
        for (name, value) in headers {
            if let n = HTTPField.Name(name) { fields.append(HTTPField(name: n, value: value)) }
        }
        return HTTPRequest(
            method: HTTPRequest.Method(method) ?? .get, scheme: "http", authority: "127.0.0.1", path: target,
            headerFields: fields)
    }
}

extension API {
    /// Answers a test request.
    func handle(_ request: TestRequest) -> Response { respond(request.head) }
}

extension Response {
    /// The value of header field `name` (compared without case), if present.
    func header(_ name: String) -> String? {
        HTTPField.Name(name).flatMap { head.headerFields[$0] }
    }
}
