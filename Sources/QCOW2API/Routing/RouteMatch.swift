/// A request path matched to its route, with the raw (still percent-encoded) names it carries.
public struct RouteMatch: Sendable {
    /// The route.
    public let route: Route
    /// The `{image}` segment as sent, percent-encoded; empty when the route has none.
    public let rawImage: Substring
    /// The `{bitmap}` segment as sent, percent-encoded; empty when the route has none.
    public let rawBitmap: Substring
    /// The `{asset}` segment as sent; `/` for the bare path `/ui` (which redirects to `/ui/`).
    public let rawAsset: Substring
    /// The `{index}` segment as sent; empty when the route has none.
    public var rawIndex: Substring = ""
}
