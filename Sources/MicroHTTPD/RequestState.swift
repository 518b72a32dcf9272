/// Per-request bookkeeping that libmicrohttpd carries in the access handler's `*req_cls`.
///
/// Created and retained in the URI-log callback (which sees the request target before MHD parses it),
/// released in the request-completed callback. A connection is served by one MHD thread at a time, so
/// the fields need no locking (the ``HTTPResponder`` locks its own state).
final class RequestState {
    /// The request target exactly as on the request line.
    let rawTarget: String
    /// Whether the access handler was already called once (headers complete).
    var sawHeaders = false
    /// Request body bytes read and thrown away so far.
    var discardedBytes = 0
    /// The handler's responder once the handler was called; its answer is queued when it comes.
    var responder: HTTPResponder?

    /// Creates the state for a request whose target is `rawTarget`.
    init(rawTarget: String) {
        self.rawTarget = rawTarget
    }
}
