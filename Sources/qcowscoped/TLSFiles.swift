import MicroHTTPD

/// The PEM files of the HTTPS certificate and key, read at start and again on SIGHUP.
struct TLSFiles: Sendable, Equatable {
    /// The certificate chain file (server certificate first, then intermediates).
    var certificate: String
    /// The unencrypted private key file.
    var key: String
    /// PEM file of the CAs whose client certificates are required (`--tls-client-ca`); nil: none asked for.
    var clientCA: String? = nil

    /// Reads and sanity-checks both files.
    ///
    /// - Throws: ``StartupError`` naming the file: unreadable, not PEM, or an encrypted key. Whether key and
    ///   certificate match is checked by libmicrohttpd when it starts serving with them.
    func load() throws(StartupError) -> TLSCredentials {
        let chain = try SmallFile.read(certificate, what: "TLS certificate")
        let keyBytes = try SmallFile.read(key, what: "TLS key")
        guard Self.contains(chain, "-----BEGIN CERTIFICATE-----") else {
            throw StartupError(
                "TLS certificate '\(certificate)' holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
        }
        if Self.contains(keyBytes, "-----BEGIN ENCRYPTED PRIVATE KEY-----")
            || Self.contains(keyBytes, "Proc-Type: 4,ENCRYPTED")
        {
            throw StartupError(
                "TLS key '\(key)' is encrypted; give an unencrypted key (protect it with file permissions)")
        }
        guard Self.contains(keyBytes, "PRIVATE KEY-----") else {
            throw StartupError("TLS key '\(key)' holds no PEM private key (-----BEGIN PRIVATE KEY-----)")
        }
        var ca: [UInt8]? = nil
        if let clientCA {
            let bytes = try SmallFile.read(clientCA, what: "TLS client CA")
            guard Self.contains(bytes, "-----BEGIN CERTIFICATE-----") else {
                throw StartupError("TLS client CA '\(clientCA)' holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
            }
            ca = bytes
        }
        return TLSCredentials(certificateChainPEM: chain, privateKeyPEM: keyBytes, clientCAPEM: ca)
    }

    /// Whether `bytes` contain the ASCII text `marker`.
    private static func contains(_ bytes: [UInt8], _ marker: String) -> Bool {
        let needle = Array(marker.utf8)
        guard bytes.count >= needle.count else { return false }
        return (0...(bytes.count - needle.count)).contains { start in
            bytes[start..<(start + needle.count)].elementsEqual(needle)
        }
    }
}
