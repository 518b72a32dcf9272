/// One route: its pattern and everything the layers around the documents need to know about it.
///
/// Routes are declared once, in ``RouteTable/all``; matching, metrics labels, authentication, the
/// spec parity test, the CLI and the access log all read them from there.
public struct Route: Sendable {
    /// One segment of a pattern.
    public enum Segment: Sendable, Hashable {
        /// A fixed segment, e.g. `images`.
        case literal(String)
        /// `{image}`: an image name, percent-encoded, one path component.
        case image
        /// `{bitmap}` (or `{checkpoint}`): a bitmap name, percent-encoded.
        case bitmap
        /// `{asset}`: a web view file name (may be empty: `/ui/` is `index.html`).
        case asset
        /// `{index}`: a table index, decimal.
        case index
    }

    /// Who may call the route when a bearer token is configured.
    public enum Access: Sendable, Hashable {
        /// Needs the token.
        case token
        /// Needs the token unless `/healthz` was opened (`--open-health`).
        case health
        /// Needs the token unless `/metrics` was opened (`--open-metrics`).
        case metrics
        /// Never needs it: static files of the web view, which hold no image data.
        case open
    }

    /// How answers may be reused by clients and by the daemon's rendered-body cache.
    public enum Caching: Sendable, Hashable {
        /// ETag from the image file's version (and the lock state when probed); rendered bodies are
        /// kept unless `keepBody` is false (answers whose text is not all in the ETag).
        case imageVersion(keepBody: Bool)
        /// ETag from the bytes served (static assets).
        case content
        /// `Cache-Control: no-cache` without an ETag (the listing, the spec).
        case revalidate
        /// `Cache-Control: no-store` (health, metrics).
        case noStore
    }

    /// The route's name.
    public let id: RouteID
    /// The pattern as in `api/openapi.yaml`, e.g. `/v1/images/{image}/bitmaps/{bitmap}/table`.
    public let pattern: String
    /// The pattern split at `/` (without the leading empty segment).
    public let segments: [Segment]
    /// Page limits, for paginated routes.
    public let paging: PageLimits?
    /// Caching of answers.
    public let caching: Caching
    /// Whether answers show QEMU's lock state (probed on every request, part of the ETag).
    public let probesLocks: Bool
    /// Who may call it when a token is configured.
    public let access: Access
    /// Whether `api/openapi.yaml` documents it (the web view's files and redirects are not API).
    public let documented: Bool

    /// Whether answers read files (the images, the directory), so the daemon runs them on its I/O
    /// executor under a deadline: every route but the health check, the spec and the web view's files.
    /// `/metrics` reads the images for its per-image series.
    public var readsFiles: Bool {
        switch id {
        case .health, .openapi, .rules, .root, .ui: false
        default: true
        }
    }

    /// Whether answers read the image's backing files and data files too (the map, the chain, the
    /// allocation totals, the checkpoints, and the check, which says what of the chain qemu-img could not open): a stalled read on any of them makes these answers of the image stalled.
    public var readsBackingChain: Bool {
        switch id {
        case .map, .chain, .allocation, .check, .checkpoints, .checkpoint, .checkpointExtents: true
        default: false
        }
    }

    /// Declares a route; the pattern is split into segments here.
    init(
        _ id: RouteID, _ pattern: String, paging: PageLimits? = nil, caching: Caching = .imageVersion(keepBody: true),
        probesLocks: Bool = false, access: Access = .token, documented: Bool = true
    ) {
        self.id = id
        self.pattern = pattern
        self.segments = pattern.split(separator: "/", omittingEmptySubsequences: false).dropFirst().map { s in
            switch s {
            case "{image}": .image
            case "{bitmap}", "{checkpoint}": .bitmap
            case "{asset}": .asset
            case "{index}": .index
            default: .literal(String(s))
            }
        }
        self.paging = paging
        self.caching = caching
        self.probesLocks = probesLocks
        self.access = access
        self.documented = documented
    }

    /// The bounded label of this route in metrics and logs: the pattern (`/ui/*` for web view files).
    public var label: String { id == .ui ? "/ui/*" : pattern }

    /// Whether the route names an image (its path has `{image}`).
    public var needsImage: Bool { segments.contains(.image) }

    /// The route's path for the given names, percent-encoded (for `Link` headers and clients).
    public func path(image: [UInt8] = [], bitmap: [UInt8] = [], index: UInt64? = nil) -> String {
        var out = ""
        for s in segments {
            out += "/"
            switch s {
            case .literal(let l): out += l
            case .image: out += PercentEncoding.encode(image)
            case .bitmap: out += PercentEncoding.encode(bitmap)
            case .asset: break
            case .index: out += index.map { String($0) } ?? ""
            }
        }
        return out.isEmpty ? "/" : out
    }
}
