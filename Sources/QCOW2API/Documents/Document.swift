/// A document: the JSON value of one answer and, for a page, the parameters of the next page.
public struct Document: Sendable {
    /// The body.
    public var value: JSONValue
    /// The query parameters that ask for the next page, in order; nil on the last page (or when the
    /// document is not paged). HTTP turns them into a `Link: rel="next"`, the CLI into its next call.
    public var next: [(name: String, value: String)]?
    /// Seconds after which to ask again, for an answer that is not final yet (`202 Accepted` with
    /// `Retry-After`: a check still running); nil for a final answer.
    public var retryAfter: Int?

    /// Creates a document.
    public init(_ value: JSONValue, next: [(name: String, value: String)]? = nil) {
        self.value = value
        self.next = next
    }
}
