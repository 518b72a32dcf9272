import CMicroHTTPD
import Glibc

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
    if !state.sawHeaders {
        state.sawHeaders = true
        context.headersComplete()
        if unsafe !bodyFitsDiscardLimit(connection, limit: context.uploadDiscardLimit) {
            // Answer now: MHD then never reads the body and closes the connection after the response.
            return unsafe answer(
                connection: connection, state: state, method: method, version: version, context: context)
        }
        return .YES
    }
    let pending = unsafe uploadDataSize.pointee
    if pending > 0 {
        state.discardedBytes += pending
        unsafe uploadDataSize.pointee = 0
        // Content-Length was checked on the first call; more than that means a broken request.
        return state.discardedBytes <= context.uploadDiscardLimit ? .YES : .NO
    }
    return unsafe answer(connection: connection, state: state, method: method, version: version, context: context)
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

/// Builds the request, calls the handler and queues its response.
private func answer(
    connection: OpaquePointer, state: RequestState, method: UnsafePointer<CChar>?, version: UnsafePointer<CChar>?,
    context: ServerContext
) -> MHD_Result {
    let request = unsafe makeRequest(
        connection: connection, state: state,
        method: method.map { unsafe String(cString: $0) } ?? "",
        version: version.map { unsafe String(cString: $0) } ?? "")
    let response = context.isOverloaded ? overloaded(request) : context.handler(request)
    return unsafe queue(response, on: connection, context: context)
}

/// The answer while the server sheds load: 503 problem+json with `Retry-After`, without calling the handler.
private func overloaded(_ request: HTTPRequest) -> HTTPResponse {
    let path = request.rawPath.unicodeScalars.map { $0 == "\"" || $0 == "\\" || $0.value < 0x20 ? "_" : String($0) }.joined()
    let body =
        #"{"type":"urn:qcowscope:problem:overloaded","title":"Service unavailable","status":503,"#
        + #""detail":"too many requests in progress; retry after the delay in Retry-After","instance":""# + path + "\"}\n"
    return HTTPResponse(
        status: 503,
        headers: [
            ("Content-Type", "application/problem+json"), ("Retry-After", "1"), ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
        ],
        body: Array(body.utf8))
}

/// Collects method, target, headers and client address into an ``HTTPRequest``.
private func makeRequest(
    connection: OpaquePointer, state: RequestState, method: String, version: String
) -> HTTPRequest {
    let collector = HeaderCollector()
    withExtendedLifetime(collector) {
        _ = unsafe MHD_get_connection_values(
            connection, .HEADER_KIND, mhdCollectHeader, Unmanaged.passUnretained(collector).toOpaque())
    }
    var remote = ""
    if let address = unsafe cmhd_client_address(connection), let decoded = unsafe SocketAddress.decode(address) {
        remote = decoded.host
    }
    return HTTPRequest(
        method: method, rawTarget: state.rawTarget, headers: collector.fields, remoteAddress: remote,
        version: version)
}

/// MHD_KeyValueIterator for request headers: appends one field to the ``HeaderCollector``.
private func mhdCollectHeader(
    _ cls: UnsafeMutableRawPointer?, _ kind: MHD_ValueKind, _ key: UnsafePointer<CChar>?,
    _ value: UnsafePointer<CChar>?
) -> MHD_Result {
    guard let cls = unsafe cls, let key = unsafe key else { return .YES }
    let collector = unsafe Unmanaged<HeaderCollector>.fromOpaque(cls).takeUnretainedValue()
    collector.fields.append((unsafe String(cString: key), unsafe value.map { unsafe String(cString: $0) } ?? ""))
    return .YES
}

/// Copies a response into libmicrohttpd and queues it on the connection.
private func queue(_ response: HTTPResponse, on connection: OpaquePointer, context: ServerContext) -> MHD_Result {
    var status = response.status
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
    for field in response.headers where !HTTPRequest.sameName(field.name, "Content-Length") {
        if unsafe MHD_add_response_header(mhdResponse, field.name, field.value) != .YES {
            context.errorLog("response header '\(field.name)' was refused")
        }
    }
    if context.isDraining {
        _ = unsafe MHD_add_response_header(mhdResponse, "Connection", "close")
    }
    let queued = unsafe MHD_queue_response(connection, UInt32(status), mhdResponse)
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
