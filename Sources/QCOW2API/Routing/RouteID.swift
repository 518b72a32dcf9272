/// The name of every route: what a request asks for once its path matched.
///
/// Each case is declared once, with its pattern and properties, in ``RouteTable/all``.
public enum RouteID: String, Sendable, Hashable, CaseIterable {
    /// `/`: redirects to the web view.
    case root
    /// `/ui/{asset}`: a file of the built-in web view (`/ui` redirects to `/ui/`).
    case ui
    /// `/healthz`.
    case health
    /// `/metrics`: the Prometheus exposition (answered by the daemon's metrics).
    case metrics
    /// `/v1/openapi.yaml`.
    case openapi
    /// `/v1/rules`: every rule an image can break, with its meaning and what to do.
    case rules
    /// `/v1/images`: the listing.
    case images
    /// `/v1/images/{image}`: the summary.
    case summary
    /// `/v1/images/{image}/header`.
    case header
    /// `/v1/images/{image}/extensions`.
    case extensions
    /// `/v1/images/{image}/bitmaps`.
    case bitmaps
    /// `/v1/images/{image}/bitmaps/{bitmap}`.
    case bitmap
    /// `/v1/images/{image}/bitmaps/{bitmap}/table`.
    case table
    /// `/v1/images/{image}/bitmaps/{bitmap}/extents`.
    case extents
    /// `/v1/images/{image}/snapshots`.
    case snapshots
    /// `/v1/images/{image}/findings`.
    case findings
    /// `/v1/images/{image}/locks`.
    case locks
    /// `/v1/images/{image}/l1`: a page of the L1 table.
    case l1
    /// `/v1/images/{image}/l1/{index}/l2`: a page of one L2 table.
    case l2
    /// `/v1/images/{image}/map`
    case map
    /// `/v1/images/{image}/chain`
    case chain
    /// `/v1/images/{image}/allocation`
    case allocation
    /// `/v1/images/{image}/check`: the read-only refcount check (202 while it runs).
    case check
    /// `/v1/images/{image}/checkpoints`: every bitmap name of the chain, with its incremental-backup verdict.
    case checkpoints
    /// `/v1/images/{image}/checkpoints/{checkpoint}`: one verdict, and what a backup since it reads.
    case checkpoint
    /// `/v1/images/{image}/checkpoints/{checkpoint}/extents`: the union of the chain's bitmaps of that name.
    case checkpointExtents
}
