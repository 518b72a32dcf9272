/// How many items one page of a paginated route holds: the default and the most a client may ask for.
public struct PageLimits: Sendable, Hashable {
    /// Items per page when the request names no `limit`.
    public var defaultLimit: UInt64
    /// The largest `limit` accepted; above it the request is refused.
    public var maximum: UInt64

    /// Creates limits; `defaultLimit` must not exceed `maximum` (both are constants of the route table).
    public init(default defaultLimit: UInt64, maximum: UInt64) {
        self.defaultLimit = defaultLimit
        self.maximum = maximum
    }

    /// The accepted range of `limit`.
    public var range: ClosedRange<UInt64> { 1...maximum }
}
