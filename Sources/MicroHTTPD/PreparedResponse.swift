import CMicroHTTPD
public import HTTPTypes

/// A response built once in libmicrohttpd, body and header fields, and queued again for every request it
/// answers (libmicrohttpd counts the queues that hold a response; it is freed after the last one).
///
/// Made by the application for answers it can give again to the same request target (see ``HotPath``);
/// `Content-Length` and `Date` are added by libmicrohttpd at each sending, as for every answer.
public final class PreparedResponse: @unchecked Sendable {
    /// The libmicrohttpd response; never changed after `init`, destroyed by `deinit`.
    let handle: OpaquePointer
    /// The status code it is sent with.
    public let status: Int
    /// The body's size in bytes.
    public let bodyCount: Int

    /// Copies `head`'s fields (but `Content-Length`) and `body` into a libmicrohttpd response; nil
    /// when it cannot be made (out of memory, a status outside 100...999, a field MHD refuses).
    public init?(_ head: HTTPResponse, body: [UInt8]) {
        guard (100...999).contains(head.status.code) else { return nil }
        let made = unsafe body.withUnsafeBytes { bytes in
            unsafe MHD_create_response_from_buffer(
                bytes.count, UnsafeMutableRawPointer(mutating: bytes.baseAddress), .RESPMEM_MUST_COPY)
        }
        guard let made = unsafe made else { return nil }
        for field in head.headerFields where field.name != .contentLength {
            if unsafe MHD_add_response_header(made, field.name.rawName, field.value) != .YES {
                unsafe MHD_destroy_response(made)
                return nil
            }
        }
        handle = made
        status = head.status.code
        bodyCount = body.count
    }

    deinit {
        unsafe MHD_destroy_response(handle)
    }
}
