import Synchronization

/// What libmicrohttpd's callbacks reach through their `void *` closure: the handler, counters and the log sink.
///
/// ``HTTPServer`` retains one instance with `Unmanaged.passRetained` before starting any daemon and
/// releases it after the last `MHD_stop_daemon` returned, so every callback sees a live object.
final class ServerContext: Sendable {
    /// The application's request handler, called on MHD's threads.
    let handler: @Sendable (HTTPRequest) -> HTTPResponse
    /// Where MHD's own error messages go.
    let errorLog: @Sendable (String) -> Void
    /// Bytes of request body discarded before answering early (``HTTPServerConfiguration/uploadDiscardLimit``).
    let uploadDiscardLimit: Int
    /// Requests whose request line arrived and that are not completed yet.
    private let inFlight = Atomic<Int>(0)
    /// Whether the server is shutting down: responses then carry `Connection: close`.
    private let draining = Atomic<Bool>(false)

    /// Creates a context.
    init(
        handler: @escaping @Sendable (HTTPRequest) -> HTTPResponse,
        errorLog: @escaping @Sendable (String) -> Void,
        uploadDiscardLimit: Int
    ) {
        self.handler = handler
        self.errorLog = errorLog
        self.uploadDiscardLimit = uploadDiscardLimit
    }

    /// The number of requests in flight.
    var inFlightRequests: Int { inFlight.load(ordering: .acquiring) }

    /// Whether responses should close their connection.
    var isDraining: Bool { draining.load(ordering: .acquiring) }

    /// Counts a request whose request line just arrived.
    func requestBegan() { inFlight.add(1, ordering: .acquiringAndReleasing) }

    /// Counts a request that MHD reports completed (answered, or its connection closed).
    func requestEnded() { inFlight.subtract(1, ordering: .acquiringAndReleasing) }

    /// Makes every later response close its connection.
    func startDraining() { draining.store(true, ordering: .releasing) }
}
