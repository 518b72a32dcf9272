import Synchronization

/// A value computed at most once, by the first caller; concurrent callers wait for that computation.
///
/// The single flight behind every cache of the catalog: a parse, a finding index, a dirty count or a
/// rendered body is computed once per key and version, and any budget it charges is charged once.
/// The computation runs while the lock is held, so it must not ask the same `Once` again.
public final class Once<Value: Sendable>: Sendable {
    private let state: Mutex<Value?>

    /// Creates an empty cell.
    public init() { state = Mutex(nil) }

    /// Creates a cell that already holds `value`.
    public init(value: Value) {
        state = Mutex(value)
    }

    /// The value, computing it with `compute` if no caller did yet.
    public func value(_ compute: () -> Value) -> Value {
        state.withLock { slot in
            if let v = slot { return v }
            let v = compute()
            slot = v
            return v
        }
    }

    /// The value if it was computed and no computation is running now; nil otherwise (never waits).
    public var ifComputed: Value? {
        state.withLockIfAvailable { $0 } ?? nil
    }
}
