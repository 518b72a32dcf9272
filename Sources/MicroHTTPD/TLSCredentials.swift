import CMicroHTTPD

/// A certificate chain and private key for HTTPS, handed to libmicrohttpd's GnuTLS backend from memory.
///
/// The PEM bytes are given to `MHD_OPTION_HTTPS_MEM_CERT` and `MHD_OPTION_HTTPS_MEM_KEY`; the key must not
/// be encrypted (no password option is offered). ``HTTPServer/reloadTLS(_:drainTimeout:)`` swaps them
/// on a running server.
public struct TLSCredentials: Sendable, Equatable {
    /// The server certificate followed by any intermediate certificates, PEM.
    public var certificateChainPEM: [UInt8]
    /// The unencrypted private key of the certificate, PEM (PKCS#1, PKCS#8 or SEC1).
    public var privateKeyPEM: [UInt8]
    /// The GnuTLS priority string (`MHD_OPTION_HTTPS_PRIORITIES`).
    public var priorities: String
    /// PEM certificates of the CAs whose client certificates are accepted (`MHD_OPTION_HTTPS_MEM_TRUST`);
    /// nil asks for no client certificate. The server only asks for one: the handler is told whether
    /// it was verified (``ClientInfo/certificate``) and refuses the request otherwise.
    public var clientCAPEM: [UInt8]?

    /// TLS 1.2 and 1.3 only, with GnuTLS's `NORMAL` ciphers.
    public static let defaultPriorities = "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"

    /// Creates credentials from PEM bytes.
    public init(
        certificateChainPEM: [UInt8], privateKeyPEM: [UInt8], priorities: String = defaultPriorities,
        clientCAPEM: [UInt8]? = nil
    ) {
        self.certificateChainPEM = certificateChainPEM
        self.privateKeyPEM = privateKeyPEM
        self.priorities = priorities
        self.clientCAPEM = clientCAPEM
    }

    /// Whether this libmicrohttpd supports HTTPS (`MHD_FEATURE_TLS`; Debian's build links GnuTLS).
    public static var isSupported: Bool { cmhd_tls_supported() != 0 }

    /// Checks that TLS is available and that the PEM texts can be passed as C strings.
    ///
    /// Whether the certificate and key parse and match is only known when libmicrohttpd starts a daemon.
    func validate() throws(HTTPServerError) {
        func invalid(_ message: String) -> HTTPServerError {
            HTTPServerError(code: .invalidConfiguration, message: message)
        }
        guard Self.isSupported else { throw invalid("this libmicrohttpd was built without TLS support") }
        if certificateChainPEM.isEmpty || certificateChainPEM.contains(0) {
            throw invalid("the TLS certificate is empty or contains NUL bytes")
        }
        if privateKeyPEM.isEmpty || privateKeyPEM.contains(0) {
            throw invalid("the TLS private key is empty or contains NUL bytes")
        }
        if priorities.isEmpty || priorities.utf8.contains(0) { throw invalid("the TLS priority string is empty") }
        if let ca = clientCAPEM, ca.isEmpty || ca.contains(0) {
            throw invalid("the TLS client CA is empty or contains NUL bytes")
        }
    }
}
