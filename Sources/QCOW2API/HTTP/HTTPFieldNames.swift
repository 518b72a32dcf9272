public import HTTPTypes

extension HTTPField.Name {
    /// `Link` (RFC 8288), for `rel="next"` pages.
    public static let link = constant("Link")
    /// `Referrer-Policy`.
    public static let referrerPolicy = constant("Referrer-Policy")
    /// `X-Frame-Options`.
    public static let xFrameOptions = constant("X-Frame-Options")

    /// A name from a constant token of this file; every one is a valid token, so the fallback never applies.
    private static func constant(_ token: String) -> HTTPField.Name {
        HTTPField.Name(token) ?? .via
    }
}
