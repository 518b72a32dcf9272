import HTTPTypes

/// Accumulates header fields while `MHD_get_connection_values` iterates over them.
final class HeaderCollector {
    /// The fields seen so far, in order.
    var fields: HTTPFields = [:]
    /// The first `Host` field's value (swift-http-types keeps it as the request's authority).
    var authority: String?
}
