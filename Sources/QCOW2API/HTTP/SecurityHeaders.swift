public import HTTPTypes

/// The security header fields, set in exactly one place: ``apply(to:route:)`` on every answer.
public enum SecurityHeaders {
    /// The web view's policy: no inline script, nothing from elsewhere, no framing, no forms.
    public static let contentSecurityPolicy =
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        + "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'"

    /// Adds `X-Content-Type-Options: nosniff` to every answer, and the web view's CSP, referrer and
    /// framing policies to its pages.
    public static func apply(to fields: inout HTTPFields, route: Route?) {
        fields[.xContentTypeOptions] = "nosniff"
        if route?.id == .ui || route?.id == .root {
            fields[.contentSecurityPolicy] = contentSecurityPolicy
            fields[.referrerPolicy] = "no-referrer"
            fields[.xFrameOptions] = "DENY"
        }
    }
}
