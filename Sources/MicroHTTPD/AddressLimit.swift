import Synchronization

/// Open connections per client address over every event loop of one socket (``HTTPServerConfiguration/perIPConnectionLimit``).
///
/// libmicrohttpd counts per-IP connections across its own thread pool; the daemons of ``EventLoop`` are
/// separate, so the count is kept here: the accept policy refuses an address that has `limit` connections
/// open, and libmicrohttpd's connection notifications count them as they open and close. Two connections
/// from one address accepted at the same instant by two loops may both pass, so the limit can be passed by
/// at most one connection per other loop, for as long as those connections stay open.
final class AddressLimit: Sendable {
    /// Connections allowed per address.
    let limit: Int
    private let open = Mutex<[ClientAddress: Int]>([:])

    /// Creates the count for `limit` connections per address (at least 1).
    init(limit: Int) {
        self.limit = max(1, limit)
    }

    /// Whether a connection from `address` may be accepted now.
    func admits(_ key: ClientAddress?) -> Bool {
        guard let key else { return true }
        return open.withLock { ($0[key] ?? 0) < limit }
    }

    /// Counts a connection that opened (`delta` 1) or closed (-1).
    func count(_ key: ClientAddress?, _ delta: Int) {
        guard let key else { return }
        open.withLock { all in
            let n = (all[key] ?? 0) + delta
            all[key] = n > 0 ? n : nil
        }
    }
}
