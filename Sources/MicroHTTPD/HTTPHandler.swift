public import HTTPTypes

/// The application's side of the server: answers one request on libmicrohttpd's thread.
///
/// The request is a swift-http-types head whose `path` is the request target exactly as sent (path
/// and query, nothing percent-decoded); its `authority` is the `Host` field. The answer's body is
/// copied into libmicrohttpd, which adds `Content-Length` and `Date`; for `HEAD` the body is not sent
/// but `Content-Length` still states its size, so answer `HEAD` as `GET`.
public typealias HTTPHandler = @Sendable (HTTPRequest, ClientInfo) -> (head: HTTPResponse, body: [UInt8])

/// An application that may answer later: it gets the request and an ``HTTPResponder``, and either
/// answers before returning or keeps the responder and answers from any thread when its work is done.
///
/// While it waits the connection is suspended and no libmicrohttpd thread is held, so a slow answer
/// (storage that stalls) costs nothing to the other connections. Every request must be answered.
public typealias DeferredHTTPHandler = @Sendable (HTTPRequest, ClientInfo, HTTPResponder) -> Void
