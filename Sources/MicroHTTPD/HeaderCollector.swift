/// Accumulates header fields while `MHD_get_connection_values` iterates over them.
final class HeaderCollector {
    /// The fields seen so far, in order.
    var fields: [(name: String, value: String)] = []
}
