import Dispatch
import Synchronization

/// The deadlines of answers in progress, watched by one timer for all of them.
///
/// A dispatch timer per request would cost more than a cached answer itself; instead each answer adds
/// its deadline here (a lock and a dictionary insert) and removes it when it is answered; one repeating
/// timer, every ``tick``, fires the ones that passed. A deadline therefore fires up to one tick late.
public final class Deadlines: Sendable {
    private struct Entry: Sendable {
        let at: ContinuousClock.Instant
        let fire: @Sendable () -> Void
    }

    private struct State: Sendable {
        var next = 0
        var pending: [Int: Entry] = [:]
    }

    /// How often passed deadlines are looked for.
    public let tick: Duration
    private let state = Mutex(State())
    /// The timer, kept alive here; only created, resumed and cancelled (by `init` and `deinit`).
    @safe private struct Timer: @unchecked Sendable {
        let source: any DispatchSourceTimer
    }
    private let timer: Timer
    private let queue = DispatchQueue(label: "qcowscope.deadlines")

    /// Starts the timer.
    public init(tick: Duration = .milliseconds(25)) {
        self.tick = tick
        let ms = max(1, Int(tick.components.seconds * 1000 + tick.components.attoseconds / 1_000_000_000_000_000))
        let t = DispatchSource.makeTimerSource(queue: queue)
        t.schedule(deadline: .now() + .milliseconds(ms), repeating: .milliseconds(ms), leeway: .milliseconds(max(1, ms / 4)))
        timer = Timer(source: t)
        t.setEventHandler { [weak self] in self?.fireDue() }
        t.resume()
    }

    deinit {
        timer.source.cancel()
    }

    /// Calls `fire` once `timeout` has passed, unless ``cancel(_:)`` is called first with the returned id.
    public func add(after timeout: Duration, _ fire: @escaping @Sendable () -> Void) -> Int {
        let entry = Entry(at: .now + timeout, fire: fire)
        return state.withLock { s in
            s.next &+= 1
            s.pending[s.next] = entry
            return s.next
        }
    }

    /// Forgets the deadline `id` (its answer came in time).
    public func cancel(_ id: Int) {
        _ = state.withLock { $0.pending.removeValue(forKey: id) }
    }

    /// Deadlines not yet fired nor cancelled.
    public var count: Int { state.withLock { $0.pending.count } }

    private func fireDue() {
        let now = ContinuousClock.now
        let due = state.withLock { s -> [Entry] in
            guard !s.pending.isEmpty else { return [] }
            let ids = s.pending.compactMap { $0.value.at <= now ? $0.key : nil }
            return ids.compactMap { s.pending.removeValue(forKey: $0) }
        }
        for e in due { e.fire() }
    }
}
