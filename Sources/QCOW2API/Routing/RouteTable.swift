/// Every route of the service, declared once, and the matcher that finds a request's route.
public enum RouteTable {
    /// The routes, in the order of `api/openapi.yaml`, then the daemon's and the web view's.
    public static let all: [Route] = [
        Route(.health, "/healthz", caching: .noStore, access: .health),
        Route(.openapi, "/v1/openapi.yaml", caching: .revalidate),
        Route(.rules, "/v1/rules", caching: .content),
        Route(.images, "/v1/images", paging: PageLimits(default: 100, maximum: 1000), caching: .revalidate),
        Route(.summary, "/v1/images/{image}", probesLocks: true),
        Route(.header, "/v1/images/{image}/header"),
        Route(.extensions, "/v1/images/{image}/extensions"),
        Route(.bitmaps, "/v1/images/{image}/bitmaps", paging: PageLimits(default: 1000, maximum: 10000), probesLocks: true),
        Route(.bitmap, "/v1/images/{image}/bitmaps/{bitmap}", probesLocks: true),
        Route(
            .table, "/v1/images/{image}/bitmaps/{bitmap}/table", paging: PageLimits(default: 256, maximum: 4096),
            probesLocks: true),
        Route(
            .extents, "/v1/images/{image}/bitmaps/{bitmap}/extents", paging: PageLimits(default: 1000, maximum: 10000),
            probesLocks: true),
        Route(.snapshots, "/v1/images/{image}/snapshots", paging: PageLimits(default: 1000, maximum: 10000)),
        Route(.findings, "/v1/images/{image}/findings", paging: PageLimits(default: 1000, maximum: 10000)),
        Route(.locks, "/v1/images/{image}/locks", caching: .imageVersion(keepBody: false), probesLocks: true),
        Route(.l1, "/v1/images/{image}/l1", paging: PageLimits(default: 256, maximum: 4096)),
        Route(.l2, "/v1/images/{image}/l1/{index}/l2", paging: PageLimits(default: 256, maximum: 4096)),
        Route(.map, "/v1/images/{image}/map", paging: PageLimits(default: 1000, maximum: 10000), caching: .imageVersion(keepBody: false)),
        Route(.chain, "/v1/images/{image}/chain", probesLocks: true),
        Route(.allocation, "/v1/images/{image}/allocation"),
        Route(.check, "/v1/images/{image}/check", caching: .imageVersion(keepBody: false), probesLocks: true),
        Route(
            .checkpoints, "/v1/images/{image}/checkpoints", paging: PageLimits(default: 100, maximum: 1000),
            probesLocks: true),
        Route(.checkpoint, "/v1/images/{image}/checkpoints/{checkpoint}", probesLocks: true),
        Route(
            .checkpointExtents, "/v1/images/{image}/checkpoints/{checkpoint}/extents",
            paging: PageLimits(default: 1000, maximum: 10000), probesLocks: true),
        Route(.metrics, "/metrics", caching: .noStore, access: .metrics, documented: false),
        Route(.root, "/", caching: .revalidate, access: .open, documented: false),
        Route(.ui, "/ui/{asset}", caching: .content, access: .open, documented: false),
    ]

    /// The route called `id`.
    public static func route(_ id: RouteID) -> Route {
        byID[id] ?? all[0]
    }

    private static let byID: [RouteID: Route] = Dictionary(all.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })

    /// The route of a raw (not percent-decoded) request path, or nil when none serves it.
    ///
    /// The path is split once; a `{image}` or `{bitmap}` segment must not be empty. `/ui` matches the
    /// web view route with no asset segment at all (it redirects to `/ui/`).
    public static func match(_ path: Substring) -> RouteMatch? {
        guard path.utf8.first == UInt8(ascii: "/") else { return nil }
        if path == "/" { return RouteMatch(route: route(.root), rawImage: "", rawBitmap: "", rawAsset: "") }
        let parts = path.dropFirst().split(separator: "/", omittingEmptySubsequences: false)
        if parts.count == 1, parts[0] == "ui" { return RouteMatch(route: route(.ui), rawImage: "", rawBitmap: "", rawAsset: "/") }
        for r in all where r.segments.count == parts.count {
            var image: Substring = ""
            var bitmap: Substring = ""
            var asset: Substring = ""
            var index: Substring = ""
            var ok = true
            for (s, p) in zip(r.segments, parts) {
                switch s {
                case .literal(let l): ok = p == l
                case .image:
                    ok = !p.isEmpty
                    image = p
                case .bitmap:
                    ok = !p.isEmpty
                    bitmap = p
                case .asset: asset = p
                case .index:
                    ok = !p.isEmpty
                    index = p
                }
                if !ok { break }
            }
            if ok { return RouteMatch(route: r, rawImage: image, rawBitmap: bitmap, rawAsset: asset, rawIndex: index) }
        }
        return nil
    }
}
