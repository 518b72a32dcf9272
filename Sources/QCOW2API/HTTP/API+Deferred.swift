import Dispatch
public import HTTPTypes
import QCOW2
import Synchronization

extension API {
    /// Answers one request without blocking the caller on storage: the daemon's entry point.
    ///
    /// Answers that read no file (`/healthz`, the spec, the web view, errors found from the request
    /// alone, a 401) are made at once, on the calling thread. The others run on ``io``'s executor (the
    /// listing and `/metrics` on its coordinator pool, as they wait for one lookup per image) and
    /// `answer` is called from there, or with `504 io-timeout` when the deadline passes first (the work
    /// is abandoned, its thread left to finish). A request for an image with an operation stalled
    /// past ``IOPolicy/stallAfter`` is answered `503 image-stalled` at once, without queuing anything.
    /// Without a policy it answers inline. `answer` is called exactly once.
    public func respond(_ request: HTTPRequest, answer deliver: @escaping @Sendable (Response) -> Void) {
        if let refused = refusalOrPreflight(request) { return deliver(refused) }
        let answer: @Sendable (Response) -> Void
        if let cors {
            let origin = request.headerFields[.origin]
            answer = { r in
                var r = r
                cors.apply(to: &r.head.headerFields, origin: origin)
                deliver(r)
            }
        } else {
            answer = deliver
        }
        let target = Target(request)
        let path = target.path
        guard let io, let match = target.match, match.route.readsFiles,
            request.method == .get || request.method == .head
        else { return answer(respond(request, target)) }
        // Unauthenticated requests learn nothing about the storage: their 401 is made at once.
        if let access, access.needsToken(match.route), !access.accepts(request.headerFields[.authorization]) {
            return answer(respond(request, target))
        }
        // A kept body of an image inotify says is unchanged: answered here, no file touched.
        if let kept = cachedAnswer(request, target) { return answer(kept) }
        let image = String(decoding: PercentEncoding.decode(match.rawImage) ?? [], as: UTF8.self)
        // The map, the chain and the allocation read the backing files too: their stalls count.
        let chain = match.route.readsBackingChain
        if !image.isEmpty, let stalled = catalog.stall(named: image, after: io.stallAfter, chain: chain) {
            let problem = Problem.imageStalled(image: image, file: stalled.file, pending: stalled.pending, retryAfter: io.timeout)
            return answer(finish(problem, path, match.route))
        }
        let delivery = Delivery(answer)
        let timeout = io.timeout
        let deadline = io.deadlines.add(after: timeout) {
            let read = image.isEmpty ? nil : self.catalog.pendingRead(named: image, chain: chain)
            let who = image.isEmpty ? "the images directory" : image
            let problem = Problem.ioTimeout(image: who, file: read?.file ?? who, pending: read?.pending, timeout: timeout)
            delivery.deliver(self.finish(problem, path, match.route))
        }
        let pool = match.route.id == .images || match.route.id == .metrics ? io.coordinator : io.executor
        let submitted = pool.submit {
            let response = self.respond(request, target)
            io.deadlines.cancel(deadline)
            delivery.deliver(response)
        }
        if !submitted {
            io.deadlines.cancel(deadline)
            delivery.deliver(finish(Problem.overloaded, path, match.route))
        }
    }

    /// A problem as the answer to `path`, with the security headers every answer carries.
    private func finish(_ problem: Problem, _ path: Substring, _ route: Route) -> Response {
        var r = problem.response(instance: path, route: route)
        SecurityHeaders.apply(to: &r.head.headerFields, route: route)
        return r
    }

    /// The listing's entries under a deadline: images known to be stalled at once, the others looked
    /// up in parallel; those not done within ``IOPolicy/listingWait`` are listed `stalled` (a read of
    /// them is stuck) or `pending` (still being read or parsed: a large image seen for the first time).
    static func listItems(_ names: [String], documents: Documents, io: IOPolicy, into listed: ListedImages) -> [JSONValue] {
        let catalog = documents.catalog
        var items = [JSONValue?](repeating: nil, count: names.count)
        var ask: [(Int, String)] = []
        for (i, name) in names.enumerated() {
            if let p = catalog.stall(named: name, after: io.stallAfter) {
                items[i] = Documents.stalledItem(name, p, check: catalog.checks.lastOutcome(named: name))
                listed.images = nil
            } else {
                ask.append((i, name))
            }
        }
        let found = io.executor.map(ask.map(\.1), timeout: io.listingWait) { documents.listedItem($0) }
        for ((i, name), item) in zip(ask, found) {
            if let item {
                items[i] = listed.add(item)
            } else {
                // Not done in time: stalled when a read of it is stuck, else still being read (parsed).
                items[i] = Documents.stalledItem(
                    name, catalog.stall(named: name, after: io.stallAfter), pending: true, check: catalog.checks.lastOutcome(named: name))
                listed.images = nil
            }
        }
        return items.map { $0 ?? .null }
    }
}

/// One answer handed over exactly once: by its work, or by its deadline, whichever comes first.
private final class Delivery: Sendable {
    private let done = Atomic<Bool>(false)
    private let answer: @Sendable (Response) -> Void

    init(_ answer: @escaping @Sendable (Response) -> Void) {
        self.answer = answer
    }

    func deliver(_ response: Response) {
        guard done.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else { return }
        answer(response)
    }
}
