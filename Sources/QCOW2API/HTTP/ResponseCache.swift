import Synchronization

/// Rendered bodies by ETag, each rendered once (single flight) and kept within a byte budget.
///
/// An ETag names a file version and a view (path, query, lock state), so it is the whole key: a
/// changed file has new ETags and its old bodies simply age out. Concurrent misses for one ETag wait
/// for one rendering. When the budget is full the oldest half is dropped.
final class ResponseCache: Sendable {
    /// A rendered answer: the body and the `Link` value that goes with it.
    struct Rendered: Sendable {
        var body: [UInt8]
        var link: String?
        /// False when a read failed while rendering: answered, but not kept.
        var cacheable = true
        /// Set for an answer that is not final (`202 Accepted`): never kept, no validator.
        var retryAfter: Int? = nil
    }

    /// Bodies larger than this are rendered each time and never kept.
    static let maxBody = 1 << 20
    /// Bytes of bodies kept at most.
    static let budget = 16 << 20
    /// Bodies kept at most.
    static let maxCount = 4096

    private struct State {
        var cells: [String: Once<Result<Rendered, Problem>>] = [:]
        var order: [String] = []
        var bytes = 0
    }
    private let state = Mutex(State())

    /// The answer kept for `etag`, when one was rendered and kept (never renders, never waits).
    func peek(_ etag: String) -> Result<Rendered, Problem>? {
        guard let cell = state.withLock({ $0.cells[etag] }), let r = cell.ifComputed, case .success = r else { return nil }
        return r
    }

    /// The rendered answer for `etag`, rendering it with `render` if nobody did yet.
    ///
    /// A failed rendering (a problem), or one during which a read failed, is not kept: the next request
    /// tries again.
    func rendered(_ etag: String, _ render: () -> Result<Rendered, Problem>) -> Result<Rendered, Problem> {
        let cell = state.withLock { s -> Once<Result<Rendered, Problem>> in
            if let c = s.cells[etag] { return c }
            let c = Once<Result<Rendered, Problem>>()
            s.cells[etag] = c
            s.order.append(etag)
            return c
        }
        var fresh = false
        let result = cell.value {
            fresh = true
            return render()
        }
        guard fresh else { return result }
        let size: Int?
        switch result {
        case .success(let r): size = r.cacheable && r.body.count <= ResponseCache.maxBody ? r.body.count + etag.utf8.count : nil
        case .failure: size = nil
        }
        state.withLock { s in
            guard s.cells[etag] === cell else { return }
            guard let size else {
                s.cells[etag] = nil
                if let i = s.order.lastIndex(of: etag) { s.order.remove(at: i) }
                return
            }
            s.bytes += size
            if s.bytes > ResponseCache.budget || s.cells.count > ResponseCache.maxCount {
                // Drop the oldest half; their bodies are rendered again when asked for.
                let drop = s.order.count / 2
                for key in s.order.prefix(drop) { s.cells[key] = nil }
                s.order.removeFirst(drop)
                s.bytes = 0
                for key in s.order {
                    if case .success(let r)? = s.cells[key]?.ifComputed { s.bytes += r.body.count + key.utf8.count }
                }
            }
        }
        return result
    }
}
