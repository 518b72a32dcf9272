import Synchronization

/// What libmicrohttpd's callbacks reach through their `void *` closure: the handler, counters and the log sink.
///
/// Every MHD daemon gets its own instance (``sibling()``), so one daemon can be drained (its responses
/// carry `Connection: close`) while another on the same socket keeps serving, as after a TLS reload.
/// All instances of one server share the handler and the in-flight counter.
///
/// ``HTTPServer`` retains each instance with `Unmanaged.passRetained` before starting its daemon and
/// releases it after that daemon's `MHD_stop_daemon` returned, so every callback sees a live object.
final class ServerContext: Sendable {
    /// The counter of requests in flight, shared by every daemon of one server.
    private final class Counter: Sendable {
        let value = Atomic<Int>(0)
    }

    /// The application's request handler, called on MHD's threads; it may answer later.
    let handler: DeferredHTTPHandler
    /// The requests of this daemon waiting for a deferred answer (answered before it is stopped).
    let suspended: SuspendedRequests
    /// Answers from prepared responses tried before ``handler`` (nil: none; never when client certificates are asked for).
    let hotPath: HotPath?
    /// The answer while load is shed (the application's 503), called instead of ``handler``.
    let overloaded: HTTPHandler
    /// `https` when the server speaks TLS, else `http` (the scheme of every request head).
    let scheme: String
    /// Where MHD's own error messages go.
    let errorLog: @Sendable (String) -> Void
    /// Whether TLS clients are asked for a certificate (a client CA is configured): then every request's
    /// ``ClientInfo/certificate`` says what the client presented.
    let asksClientCertificate: Bool
    /// Requests in progress above which new ones get 503 (0: never).
    let overloadThreshold: Int
    /// Bytes of request body discarded before answering early (``HTTPServerConfiguration/uploadDiscardLimit``).
    let uploadDiscardLimit: Int
    /// Requests whose request line arrived and that are not completed yet, over all daemons of the server.
    private let inFlight: Counter
    /// Requests whose headers are complete and that are not completed yet: what load shedding counts, so
    /// slow clients still sending headers (slowloris) cannot make the server refuse everyone.
    private let active: Counter
    /// Open connections per client address, when ``HTTPServerConfiguration/perIPConnectionLimit`` is set.
    let addressLimit: AddressLimit?
    /// Whether this daemon is going away: its responses then carry `Connection: close`.
    private let draining = Atomic<Bool>(false)

    /// Creates the first context of a server.
    init(
        handler: @escaping DeferredHTTPHandler,
        overloaded: @escaping HTTPHandler,
        scheme: String,
        errorLog: @escaping @Sendable (String) -> Void,
        uploadDiscardLimit: Int,
        overloadThreshold: Int = 0,
        asksClientCertificate: Bool = false,
        perAddressLimit: Int = 0,
        hotPath: HotPath? = nil
    ) {
        self.hotPath = asksClientCertificate ? nil : hotPath
        self.addressLimit = perAddressLimit > 0 ? AddressLimit(limit: perAddressLimit) : nil
        self.asksClientCertificate = asksClientCertificate
        self.handler = handler
        self.overloaded = overloaded
        self.scheme = scheme
        self.errorLog = errorLog
        self.uploadDiscardLimit = uploadDiscardLimit
        self.overloadThreshold = overloadThreshold
        self.inFlight = Counter()
        self.active = Counter()
        self.suspended = SuspendedRequests()
    }

    /// A context for another daemon of the same server.
    private init(sharing other: ServerContext) {
        handler = other.handler
        hotPath = other.hotPath
        overloaded = other.overloaded
        scheme = other.scheme
        errorLog = other.errorLog
        asksClientCertificate = other.asksClientCertificate
        uploadDiscardLimit = other.uploadDiscardLimit
        overloadThreshold = other.overloadThreshold
        inFlight = other.inFlight
        active = other.active
        suspended = SuspendedRequests()
        // Each socket has its own per-address count, as it has its own connection limit.
        addressLimit = other.addressLimit.map { AddressLimit(limit: $0.limit) }
    }

    /// A new context with the same handler and in-flight counter, not draining.
    func sibling() -> ServerContext { ServerContext(sharing: self) }

    /// The number of requests in flight.
    var inFlightRequests: Int { inFlight.value.load(ordering: .acquiring) }

    /// Whether a new request should be shed with 503: more requests in progress than the threshold.
    var isOverloaded: Bool {
        overloadThreshold > 0 && active.value.load(ordering: .acquiring) > overloadThreshold
    }

    /// Counts a request whose headers are complete.
    func headersComplete() { active.value.add(1, ordering: .acquiringAndReleasing) }

    /// Uncounts a completed request that had been counted by ``headersComplete()``.
    func activeEnded() { active.value.subtract(1, ordering: .acquiringAndReleasing) }

    /// Whether responses should close their connection.
    var isDraining: Bool { draining.load(ordering: .acquiring) }

    /// Counts a request whose request line just arrived.
    func requestBegan() { inFlight.value.add(1, ordering: .acquiringAndReleasing) }

    /// Counts a request that MHD reports completed (answered, or its connection closed).
    func requestEnded() { inFlight.value.subtract(1, ordering: .acquiringAndReleasing) }

    /// Makes every later response close its connection.
    func startDraining() { draining.store(true, ordering: .releasing) }
}
