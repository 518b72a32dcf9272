import QCOW2API

/// Where a view command gets its documents: the image file itself (``ImageAccess``, the daemon's own
/// document code run in this process) or a daemon over HTTP (``RemoteImage``, `--server`).
///
/// Both answer with the same ``Document`` for the same route and parameters, so every command prints
/// the same bytes either way.
protocol ImageDocumentSource {
    /// What error lines name: the file, or the server and the image.
    var file: String { get }

    /// The document of `route` for this image; a failure has been printed (one stderr line) and is
    /// thrown as its exit code.
    func document(_ route: RouteID, bitmap: String?, index: UInt64?, _ parameters: Parameters) throws -> Document
}

extension ImageDocumentSource {
    /// The document of `route` with no bitmap, index or parameters unless given.
    func document(
        _ route: RouteID, bitmap: String? = nil, index: UInt64? = nil, _ parameters: Parameters = Parameters()
    ) throws -> Document {
        try document(route, bitmap: bitmap, index: index, parameters)
    }

    /// Follows `next` through every page and returns one document of the first page's shape, with
    /// every item of `items` (and `next` null, `limit` the number of items when there were more pages).
    ///
    /// `merge` joins an item to the previous one when a run was split at a page boundary.
    /// Pages after the first are asked for with `limit` = `pageLimit` (the route's maximum), so few calls are made.
    func all(
        _ route: RouteID, bitmap: String? = nil, index: UInt64? = nil, _ parameters: Parameters, items: String,
        merge: ((JSONValue, JSONValue) -> JSONValue?)? = nil
    ) throws -> JSONValue {
        let pageLimit = String(RouteTable.route(route).paging?.maximum ?? 1000)
        let firstPage = try document(route, bitmap: bitmap, index: index, parameters)
        var first = firstPage.value
        guard case .array(var all)? = first[items] else { return first }
        var next = firstPage.next
        var pages = 1
        while let n = next {
            var p = parameters
            p.replace(with: n)
            if route != .extents && route != .checkpointExtents { p.set("limit", pageLimit) }
            let page = try document(route, bitmap: bitmap, index: index, p)
            guard case .array(let more)? = page.value[items], !more.isEmpty else { break }
            for item in more {
                if let merge, let last = all.last, let joined = merge(last, item) {
                    all[all.count - 1] = joined
                } else {
                    all.append(item)
                }
            }
            pages += 1
            next = page.next
        }
        if pages > 1 {
            first.set(items, .array(all))
            if first["limit"] != nil && route != .extents && route != .checkpointExtents { first.set("limit", .num(all.count)) }
            first.set("next", .null)
        }
        return first
    }
}
