import HTTPTypes
import QCOW2

/// When an answer may be given again, byte for byte, to a later `GET` or `HEAD` of the same target:
/// what a server's hot path keeps with a prepared response and checks with ``API/isCurrent(_:batch:)``.
///
/// Set by the API only on answers whose every byte follows from the request target and what the
/// condition covers: a fixed answer (`/healthz`, the spec, `/v1/rules`, the web view's files), a kept
/// document of one image file version (and its lock state, for the routes that show it), never one that
/// shows a check verdict, a backing chain or a failed read, or a listing page. The request's `Host`, `Origin`, `Authorization`
/// and `If-None-Match` fields are for the hot path to check, as the API would (see ``API``).
public struct Reuse: Sendable {
    /// What must still hold.
    enum Condition: Sendable {
        /// Nothing: the answer never changes while the daemon runs.
        case always
        /// The image file is the version this entry parsed (inotify says unchanged) and, when not nil,
        /// its lock bytes are in this state (`free`: every one of them was free).
        case image(Parsed, locks: LockState?, free: Bool)
        /// No name in the directory changed (inotify), no check state changed, and each listed image
        /// that was parsed still has (or has not) a writer.
        case listing(DirectoryWatch.Stamp, checks: UInt64, images: [(Parsed, writer: Bool?)])
    }

    /// The parsed image an answer was made from, held weakly: a kept answer does not keep an image the
    /// catalog let go (it is then not current).
    final class Parsed: Sendable {
        weak let entry: ImageEntry?
        /// The image's name in the directory.
        let name: String
        /// The entry's file descriptor, to probe its lock bytes: valid while `entry` is (hold it meanwhile).
        let fd: Int32?

        init(_ entry: ImageEntry) {
            self.entry = entry
            name = entry.file.name
            fd = (entry.image.source as? FileImageSource)?.fd
        }
    }

    let condition: Condition
    /// The answer's ETag, for `If-None-Match` (nil: it has none, and a 304 is never given).
    public let etag: String?
}

/// What one listing page was made from, gathered while it is made: nil once an item is not reusable
/// (stalled, still being read, or an I/O error).
final class ListedImages {
    var images: [(Reuse.Parsed, writer: Bool?)]? = []

    /// Records one item and returns its value.
    func add(_ item: (value: JSONValue, parsed: Reuse.Parsed?, writer: Bool?, stable: Bool)) -> JSONValue {
        if !item.stable {
            images = nil
        } else if let parsed = item.parsed {
            images?.append((parsed, item.writer))
        }
        return item.value
    }
}

extension API {
    /// Whether an answer marked ``Reuse`` still is the answer: for an image, the file is unchanged
    /// (one non-blocking read of the inotify queue) and its lock bytes are as they were (one `fcntl`
    /// when nothing holds them, as QEMU is not running). Never blocks on storage: lock state is the
    /// kernel's, and images are only marked where inotify watches the directory (a local filesystem).
    ///
    /// `batch` is the server's event-loop pass the request is served in (see `DirectoryWatch`): the
    /// inotify queue is then read once per pass, not once per request.
    public func isCurrent(_ reuse: Reuse, batch: UInt64? = nil) -> Bool {
        switch reuse.condition {
        case .always:
            return true
        case .image(let parsed, let locks, let free):
            guard let entry = parsed.entry, catalog.freshEntry(named: parsed.name, batch: batch) === entry else { return false }
            guard let locks else { return true }
            guard let fd = parsed.fd else { return false }
            return withExtendedLifetime(entry) {
                // Free then, free now: one fcntl, nothing to compare.
                if free && LockState.noneHeld(fd: fd) { return true }
                return LockState.probe(fd: fd) == locks
            }
        case .listing(let stamp, let checks, let images):
            guard catalog.directoryStamp(batch: batch) == stamp, catalog.checks.changeCount == checks else { return false }
            for (parsed, writer) in images {
                // The entry is held while its descriptor is probed.
                guard let entry = parsed.entry, let fd = parsed.fd else { return false }
                let locks = withExtendedLifetime(entry) { LockState.probe(fd: fd) }
                guard locks.error == nil, locks.writerPresent == writer else { return false }
            }
            return true
        }
    }

    /// Whether answers depend on the request's `Host` (only some names are answered, 421 for others).
    public var checksHost: Bool { hosts != nil }

    /// Whether a request whose `Host` is `host` is answered (not 421).
    public func allowsHost(_ host: String?) -> Bool {
        hosts?.allows(host) ?? true
    }

    /// Whether answers depend on the request's `Origin` (other origins are allowed: CORS fields).
    public var variesWithOrigin: Bool { cors != nil }

    /// Whether answers to some routes depend on the request's `Authorization` (a token is configured).
    public var checksToken: Bool { access != nil }

    /// Whether a request for `route` with this `Authorization` value is let through (not 401).
    public func admits(_ route: Route?, authorization: String?) -> Bool {
        guard let access, access.needsToken(route) else { return true }
        return access.accepts(authorization)
    }

    /// The `304 Not Modified` answer that goes with a reusable `200`: its fields but the body's.
    public static func notModified(_ ok: Response) -> Response {
        var fields = ok.head.headerFields
        fields[.contentType] = nil
        fields[.link] = nil
        return Response(head: HTTPResponse(status: .notModified, headerFields: fields), route: ok.route)
    }

    /// Whether an `If-None-Match` value matches `etag` (RFC 9110 weak comparison).
    public static func ifNoneMatch(_ header: String, matches etag: String) -> Bool {
        matches(header, etag)
    }
}
