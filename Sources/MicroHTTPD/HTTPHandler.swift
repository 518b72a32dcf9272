public import HTTPTypes

/// The application's side of the server: answers one request on libmicrohttpd's thread.
///
/// The request is a swift-http-types head whose `path` is the request target exactly as sent (path
/// and query, nothing percent-decoded); its `authority` is the `Host` field. The answer's body is
/// copied into libmicrohttpd, which adds `Content-Length` and `Date`; for `HEAD` the body is not sent
/// but `Content-Length` still states its size, so answer `HEAD` as `GET`.
public typealias HTTPHandler = @Sendable (HTTPRequest, ClientInfo) -> (head: HTTPResponse, body: [UInt8])
