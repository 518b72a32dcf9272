import CMicroHTTPD
import Glibc

/// A `GET` or `HEAD` request as libmicrohttpd holds it, before any Swift value is built for it: what a
/// ``HotPath`` reads to answer it with a ``PreparedResponse``.
///
/// Valid only during the ``HotPath`` call it is given to (its fields point into the connection).
public struct HotRequest: ~Copyable {
    /// The request target exactly as on the request line (path and query, nothing decoded).
    public let target: String
    /// Whether the method is `HEAD` (else `GET`).
    public let isHead: Bool
    /// The event-loop pass it is served in: the same for the requests one pass of one loop serves,
    /// different from every other pass (see `EventLoop.currentBatch`): each of them was sent before the
    /// pass began (unless pipelined behind another one), so a check done once per batch, on behalf of its
    /// first request, follows whatever happened before any of them was sent.
    public let batch: UInt64?
    let connection: OpaquePointer

    /// The value of the first header field called `name` (case-insensitive), nil when absent.
    public func header(_ name: String) -> String? {
        guard let value = unsafe MHD_lookup_connection_value(connection, .HEADER_KIND, name) else { return nil }
        return unsafe String(cString: value)
    }

    /// Whether the first header field called `name` is present and its value is exactly `bytes`, without
    /// making a string of it.
    public func header(_ name: String, is bytes: [UInt8]) -> Bool {
        guard let value = unsafe MHD_lookup_connection_value(connection, .HEADER_KIND, name) else { return false }
        let length = unsafe strlen(value)
        guard length == bytes.count else { return false }
        return unsafe bytes.withUnsafeBytes { raw in
            guard let base = raw.baseAddress else { return true }
            return unsafe memcmp(value, base, length) == 0
        }
    }

    /// Whether a header field called `name` is present.
    public func has(_ name: String) -> Bool {
        unsafe MHD_lookup_connection_value(connection, .HEADER_KIND, name) != nil
    }

    /// The client's address; nil for a Unix-domain client (see ``peerUID``).
    public var address: ClientAddress? {
        unsafe ClientAddress(cmhd_client_address(connection), length: MemoryLayout<sockaddr_in6>.size)
    }

    /// The uid of a Unix-domain client (`SO_PEERCRED`); nil over TCP.
    public var peerUID: UInt32? {
        let uid = unsafe cmhd_client_peer_uid(connection)
        return uid >= 0 && uid <= Int64(UInt32.max) ? UInt32(uid) : nil
    }
}

/// The application's answer from prepared responses, tried on libmicrohttpd's thread for every `GET`
/// and `HEAD` before the request head is built: a ``PreparedResponse`` is queued at once, nil sends the
/// request the usual way (to the ``DeferredHTTPHandler``). It must not block, and it must count and log
/// what it answers itself, as the handler does.
///
/// Never called for a daemon that is draining, while load is shed, for a request with a body, or when
/// the server asks TLS clients for a certificate (their verdict is the handler's to check).
public typealias HotPath = @Sendable (borrowing HotRequest) -> PreparedResponse?
