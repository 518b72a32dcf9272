import CMicroHTTPD
public import HTTPTypes
import Synchronization

/// The answer to one request, given once, from any thread: at once by the handler, or later.
///
/// A ``DeferredHTTPHandler`` gets one per request. When the handler returns without answering, the
/// connection is suspended (`MHD_suspend_connection`): libmicrohttpd's thread goes back to serving
/// every other connection, and the request costs no thread while it waits. ``respond(_:body:)``
/// stores the answer and resumes the connection; libmicrohttpd then calls the access handler again,
/// which queues it. Only the first answer counts; later ones are ignored.
///
/// A request whose answer never comes would hold its connection for ever, so the application must
/// answer every request (qcowscope answers each within its I/O deadline). When the server stops, every
/// request still waiting is answered `503` first, as libmicrohttpd must not be stopped with suspended
/// connections.
public final class HTTPResponder: Sendable {
    /// The connection handle, only touched under the responder's lock.
    private struct Connection: @unchecked Sendable {
        let handle: OpaquePointer
    }

    private struct State: Sendable {
        var answer: (head: HTTPResponse, body: [UInt8])?
        /// Set while the connection is suspended, until it is resumed.
        var suspended: Connection?
        /// The answer was handed to the transport.
        var taken = false
    }

    private let state = Mutex(State())
    /// The registry of suspended requests this one joins while it waits.
    private let waiting: SuspendedRequests

    init(waiting: SuspendedRequests) {
        self.waiting = waiting
    }

    /// Answers the request; the first call wins, later calls do nothing.
    ///
    /// - Returns: whether this call's answer is the one sent.
    @discardableResult
    public func respond(_ head: HTTPResponse, body: [UInt8] = []) -> Bool {
        let (won, resumed) = state.withLock { s -> (Bool, Bool) in
            guard s.answer == nil else { return (false, false) }
            s.answer = (head, body)
            guard let c = s.suspended else { return (true, false) }
            s.suspended = nil
            // Resumed exactly once, and only while suspended: the connection cannot complete (and be
            // freed) before it is resumed.
            unsafe MHD_resume_connection(c.handle)
            return (true, true)
        }
        if resumed {
            waiting.remove(self)
            // libmicrohttpd does not wake an external event loop for a resumed connection.
            waiting.wakeLoops()
        }
        return won
    }

    /// Whether an answer was given.
    public var hasAnswered: Bool { state.withLock { $0.answer != nil } }

    /// The transport's step after the handler returned: the answer if there is one, else suspends the
    /// connection (nil). A server that is stopping answers `503` at once instead of suspending.
    func answerOrSuspend(_ connection: OpaquePointer) -> (head: HTTPResponse, body: [UInt8])? {
        let admitted = waiting.add(self) {
            self.state.withLock { s -> Bool in
                if s.answer != nil { return false }
                s.suspended = Connection(handle: connection)
                unsafe MHD_suspend_connection(connection)
                return true
            }
        }
        if admitted { return nil }
        if !hasAnswered {
            respond(HTTPResponse(status: .serviceUnavailable, headerFields: [.retryAfter: "1", .connection: "close"]))
        }
        return take()
    }

    /// The answer, once, for queuing (nil when none yet or already taken).
    ///
    /// The responder keeps only the head afterwards: libmicrohttpd copies the body when it is queued,
    /// so a large body is freed then, not when every reference to the responder is gone.
    func take() -> (head: HTTPResponse, body: [UInt8])? {
        state.withLock { s in
            guard !s.taken, let a = s.answer else { return nil }
            s.taken = true
            s.answer = (a.head, [])
            return a
        }
    }
}

/// The requests of one server whose connections are suspended, so that stopping can answer them first.
final class SuspendedRequests: Sendable {
    private struct State: Sendable {
        var waiting: [ObjectIdentifier: HTTPResponder] = [:]
        var closed = false
    }

    private let state = Mutex(State())
    /// The event loops serving these connections, woken when one is resumed.
    private let loops = Mutex<[EventLoop]>([])

    /// Sets the event loops to wake when a connection is resumed (once their daemons started).
    func setLoops(_ all: [EventLoop]) {
        loops.withLock { $0 = all }
    }

    /// Wakes every event loop of the daemon, so the one holding a resumed connection serves it now.
    func wakeLoops() {
        for loop in loops.withLock({ $0 }) { loop.wake() }
    }

    /// Runs `suspend` and records `responder` when it suspended, unless the server is stopping.
    ///
    /// - Returns: whether the request now waits (suspended).
    func add(_ responder: HTTPResponder, _ suspend: () -> Bool) -> Bool {
        state.withLock { s in
            guard !s.closed, suspend() else { return false }
            s.waiting[ObjectIdentifier(responder)] = responder
            return true
        }
    }

    /// Forgets a request that was resumed.
    func remove(_ responder: HTTPResponder) {
        _ = state.withLock { $0.waiting.removeValue(forKey: ObjectIdentifier(responder)) }
    }

    /// The number of requests waiting.
    var count: Int { state.withLock { $0.waiting.count } }

    /// Refuses every later suspension and answers every waiting request with `head` (resuming it).
    ///
    /// - Returns: how many requests were answered.
    @discardableResult
    func closeAll(answering head: HTTPResponse) -> Int {
        let all = state.withLock { s -> [HTTPResponder] in
            s.closed = true
            return Array(s.waiting.values)
        }
        return all.filter { $0.respond(head) }.count
    }
}
