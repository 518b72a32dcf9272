import CMicroHTTPD
import Glibc
import HTTPTypes

// The C callbacks handed to libmicrohttpd. They are nonisolated free functions on purpose: MHD calls
// them on its own threads, and a closure written in `main.swift` would be main-actor isolated and trap.

/// MHD_OPTION_URI_LOG_CALLBACK: starts a request, before MHD splits or unescapes the target.
///
/// - Returns: a retained ``RequestState``, which MHD stores in `*req_cls`.
func mhdRequestStarted(
    _ cls: UnsafeMutableRawPointer?, _ uri: UnsafePointer<CChar>?, _ connection: OpaquePointer?
) -> UnsafeMutableRawPointer? {
    guard let cls = unsafe cls else { return nil }
    let context = unsafe Unmanaged<ServerContext>.fromOpaque(cls).takeUnretainedValue()
    context.requestBegan()
    let target = unsafe uri.map { unsafe String(cString: $0) } ?? ""
    return unsafe Unmanaged.passRetained(RequestState(rawTarget: target)).toOpaque()
}

/// The accept policy of every daemon: refuses a client address that has its per-address limit of
/// connections open (``AddressLimit``); admits everything when no limit is set.
func mhdAcceptPolicy(
    _ cls: UnsafeMutableRawPointer?, _ address: UnsafePointer<sockaddr>?, _ length: socklen_t
) -> MHD_Result {
    guard let cls = unsafe cls else { return .YES }
    let context = unsafe Unmanaged<ServerContext>.fromOpaque(cls).takeUnretainedValue()
    guard let limit = context.addressLimit else { return .YES }
    let key = unsafe ClientAddress(address, length: Int(length))
    if limit.admits(key) { return .YES }
    let who = unsafe address.flatMap { unsafe SocketAddress.decode($0) }?.host ?? "a client"
    context.errorLog("refused a connection from \(who): it has \(limit.limit) open already (the per-IP connection limit)")
    return .NO
}

/// MHD_OPTION_NOTIFY_CONNECTION: counts a connection per client address as it opens and closes.
func mhdConnectionNotified(
    _ cls: UnsafeMutableRawPointer?, _ connection: OpaquePointer?,
    _ socketContext: UnsafeMutablePointer<UnsafeMutableRawPointer?>?, _ code: MHD_ConnectionNotificationCode
) {
    guard let cls = unsafe cls, let connection = unsafe connection else { return }
    let context = unsafe Unmanaged<ServerContext>.fromOpaque(cls).takeUnretainedValue()
    guard let limit = context.addressLimit else { return }
    let key = unsafe ClientAddress(cmhd_client_address(connection), length: MemoryLayout<sockaddr_in6>.size)
    // MHD_CONNECTION_NOTIFY_STARTED is 0, MHD_CONNECTION_NOTIFY_CLOSED 1.
    limit.count(key, code.rawValue == 0 ? 1 : -1)
}

/// MHD_OPTION_NOTIFY_COMPLETED: ends a request (answered, failed or its connection closed).
func mhdRequestCompleted(
    _ cls: UnsafeMutableRawPointer?, _ connection: OpaquePointer?,
    _ reqCls: UnsafeMutablePointer<UnsafeMutableRawPointer?>?, _ code: MHD_RequestTerminationCode
) {
    guard let cls = unsafe cls, let reqCls = unsafe reqCls, let state = unsafe reqCls.pointee else { return }
    let request = unsafe Unmanaged<RequestState>.fromOpaque(state)
    let context = unsafe Unmanaged<ServerContext>.fromOpaque(cls).takeUnretainedValue()
    if request.takeUnretainedValue().sawHeaders { context.activeEnded() }
    request.release()
    unsafe reqCls.pointee = nil
    context.requestEnded()
}

/// The access handler: marks the first call, discards any body, then asks the Swift handler and queues its answer.
///
/// The response is queued on the last call, once the whole request (body included) was read. Queuing on
/// the first call (headers just parsed) makes libmicrohttpd refuse the body and close the connection after
/// the response, which defeats keep-alive; libmicrohttpd 0.9.75 also refuses a response while the body
/// is being read. So the first call only answers at once when the body is too big to read and discard:
/// a `Content-Length` above the upload discard limit, or any `Transfer-Encoding` (size unknown).
func mhdAccessHandler(
    _ cls: UnsafeMutableRawPointer?, _ connection: OpaquePointer?, _ url: UnsafePointer<CChar>?,
    _ method: UnsafePointer<CChar>?, _ version: UnsafePointer<CChar>?, _ uploadData: UnsafePointer<CChar>?,
    _ uploadDataSize: UnsafeMutablePointer<Int>?, _ reqCls: UnsafeMutablePointer<UnsafeMutableRawPointer?>?
) -> MHD_Result {
    guard let cls = unsafe cls, let connection = unsafe connection, let reqCls = unsafe reqCls,
        let uploadDataSize = unsafe uploadDataSize, let statePointer = unsafe reqCls.pointee
    else { return .NO }
    let context = unsafe Unmanaged<ServerContext>.fromOpaque(cls).takeUnretainedValue()
    let state = unsafe Unmanaged<RequestState>.fromOpaque(statePointer).takeUnretainedValue()
    if let responder = state.responder {
        // Called again after the connection was resumed: queue the deferred answer.
        guard let answer = responder.take() else { return .YES }
        return unsafe queue(answer, on: connection, context: context)
    }
    if !state.sawHeaders {
        state.sawHeaders = true
        context.headersComplete()
        // A body too big to read and discard is answered now: MHD then never reads it and closes the
        // connection after the response. Otherwise wait for the last call.
        if unsafe bodyFitsDiscardLimit(connection, limit: context.uploadDiscardLimit) { return .YES }
    } else {
        let pending = unsafe uploadDataSize.pointee
        if pending > 0 {
            state.discardedBytes += pending
            unsafe uploadDataSize.pointee = 0
            // Content-Length was checked on the first call; more than that means a broken request.
            return state.discardedBytes <= context.uploadDiscardLimit ? .YES : .NO
        }
    }
    // A GET or HEAD the application answers from a prepared response: queued as it is, no head built.
    if let hot = context.hotPath, let isHead = unsafe plainMethod(method), !context.isDraining, !context.isOverloaded {
        let request = HotRequest(target: state.rawTarget, isHead: isHead, batch: EventLoop.currentBatch, connection: connection)
        if let prepared = hot(request) {
            let queued = unsafe MHD_queue_response(connection, UInt32(prepared.status), prepared.handle)
            if queued != .YES { context.errorLog("libmicrohttpd refused to queue a \(prepared.status) response") }
            return queued
        }
    }
    // Build the request head once, call the handler (or the overload answer) and queue its response.
    let methodText = unsafe method.map { unsafe String(cString: $0) } ?? ""
    var client = unsafe ClientInfo(
        remoteAddress: mhdRemoteAddress(connection), version: version.map { unsafe String(cString: $0) } ?? "")
    // No IP address: a Unix-domain connection, whose peer the kernel names (SO_PEERCRED).
    if client.remoteAddress.isEmpty {
        let uid = unsafe cmhd_client_peer_uid(connection)
        if uid >= 0, uid <= Int64(UInt32.max) { client.peerUID = UInt32(uid) }
    }
    if context.asksClientCertificate {
        var subject = [CChar](repeating: 0, count: 1024)
        switch unsafe cmhd_client_certificate(connection, &subject, subject.count) {
        case 1:
            let bytes = subject.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
            client.certificate = .verified(subject: String(decoding: bytes, as: UTF8.self))
        case 0: client.certificate = .absent
        default: client.certificate = .rejected
        }
    }
    guard let request = unsafe makeRequest(connection: connection, state: state, method: methodText, context: context)
    else {
        // Not an HTTP method token: MHD parsed a request line no handler can be given.
        return unsafe queue((HTTPResponse(status: .badRequest), [UInt8]()), on: connection, context: context)
    }
    if context.isOverloaded {
        return unsafe queue(context.overloaded(request, client), on: connection, context: context)
    }
    let responder = HTTPResponder(waiting: context.suspended)
    state.responder = responder
    context.handler(request, client, responder)
    // Answered already, or suspended until the handler answers (the access handler is called again then).
    guard let answer = unsafe responder.answerOrSuspend(connection) else { return .YES }
    return unsafe queue(answer, on: connection, context: context)
}

/// Whether `method` is `HEAD` (true) or `GET` (false); nil for any other method.
private func plainMethod(_ method: UnsafePointer<CChar>?) -> Bool? {
    guard let m = unsafe method else { return nil }
    if unsafe m[0] == 0x47, unsafe m[1] == 0x45, unsafe m[2] == 0x54, unsafe m[3] == 0 { return false }
    if unsafe m[0] == 0x48, unsafe m[1] == 0x45, unsafe m[2] == 0x41, unsafe m[3] == 0x44, unsafe m[4] == 0 { return true }
    return nil
}

/// Whether the request declares no body, or a `Content-Length` body of at most `limit` bytes.
private func bodyFitsDiscardLimit(_ connection: OpaquePointer, limit: Int) -> Bool {
    if unsafe MHD_lookup_connection_value(connection, .HEADER_KIND, "Transfer-Encoding") != nil { return false }
    guard let length = unsafe MHD_lookup_connection_value(connection, .HEADER_KIND, "Content-Length") else {
        return true
    }
    // MHD already rejected a malformed Content-Length with 400; anything unparsable here counts as too big.
    guard let value = unsafe Int(String(cString: length)) else { return false }
    return value <= limit
}

/// The client's numeric address, or an empty string.
private func mhdRemoteAddress(_ connection: OpaquePointer) -> String {
    if let address = unsafe cmhd_client_address(connection), let decoded = unsafe SocketAddress.decode(address) {
        return decoded.host
    }
    return ""
}

/// Collects method, target and header fields into a swift-http-types request head.
///
/// The target stays exactly as sent (`path`); the `Host` field becomes the `authority`. Field names
/// that are not tokens are dropped (MHD already refused most); values are kept with invalid bytes as spaces.
private func makeRequest(
    connection: OpaquePointer, state: RequestState, method: String, context: ServerContext
) -> HTTPRequest? {
    guard let m = HTTPRequest.Method(method) else { return nil }
    let collector = HeaderCollector()
    withExtendedLifetime(collector) {
        _ = unsafe MHD_get_connection_values(
            connection, .HEADER_KIND, mhdCollectHeader, Unmanaged.passUnretained(collector).toOpaque())
    }
    return HTTPRequest(
        method: m, scheme: context.scheme, authority: collector.authority, path: state.rawTarget,
        headerFields: collector.fields)
}

/// MHD_KeyValueIterator for request headers: appends one field to the ``HeaderCollector``.
private func mhdCollectHeader(
    _ cls: UnsafeMutableRawPointer?, _ kind: MHD_ValueKind, _ key: UnsafePointer<CChar>?,
    _ value: UnsafePointer<CChar>?
) -> MHD_Result {
    guard let cls = unsafe cls, let key = unsafe key else { return .YES }
    let collector = unsafe Unmanaged<HeaderCollector>.fromOpaque(cls).takeUnretainedValue()
    guard let name = unsafe HTTPField.Name(String(cString: key)) else { return .YES }
    let text = unsafe value.map { unsafe String(cString: $0) } ?? ""
    if name.canonicalName == "host" {
        if collector.authority == nil { collector.authority = text }
        return .YES
    }
    collector.fields.append(HTTPField(name: name, value: text))
    return .YES
}

/// Copies a response into libmicrohttpd and queues it on the connection.
private func queue(
    _ response: (head: HTTPResponse, body: [UInt8]), on connection: OpaquePointer, context: ServerContext
) -> MHD_Result {
    var status = response.head.status.code
    if !(100...999).contains(status) {
        context.errorLog("handler returned invalid status \(status); answering 500")
        status = 500
    }
    let mhdResponse = unsafe response.body.withUnsafeBytes { bytes in
        unsafe MHD_create_response_from_buffer(
            bytes.count, UnsafeMutableRawPointer(mutating: bytes.baseAddress), .RESPMEM_MUST_COPY)
    }
    guard let mhdResponse = unsafe mhdResponse else {
        context.errorLog("cannot allocate a response of \(response.body.count) bytes")
        return .NO
    }
    defer { unsafe MHD_destroy_response(mhdResponse) }
    for field in response.head.headerFields where field.name != .contentLength {
        if unsafe MHD_add_response_header(mhdResponse, field.name.rawName, field.value) != .YES {
            context.errorLog("response header '\(field.name.rawName)' was refused")
        }
    }
    if context.isDraining {
        _ = unsafe MHD_add_response_header(mhdResponse, "Connection", "close")
    }
    let queued = unsafe MHD_queue_response(connection, UInt32(clamping: status), mhdResponse)
    if queued != .YES { context.errorLog("libmicrohttpd refused to queue a \(status) response") }
    return queued
}

/// The sink behind MHD_OPTION_EXTERNAL_LOGGER: receives one formatted line from the C shim.
func mhdLogMessage(_ context: UnsafeMutableRawPointer?, _ message: UnsafePointer<CChar>?) {
    guard let context = unsafe context, let message = unsafe message else { return }
    var text = unsafe String(cString: message)
    while text.last == "\n" { text.removeLast() }
    unsafe Unmanaged<ServerContext>.fromOpaque(context).takeUnretainedValue().errorLog(text)
}
