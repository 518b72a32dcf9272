import HTTPTypes
import Logging
import MicroHTTPD
import QCOW2API

/// The access log line of every request, and libmicrohttpd's messages routed to the logger.
enum AccessLog {
    /// Hands `METHOD raw-path status bytes duration` to the access log's writer, with the client's address,
    /// the name of the bearer token it presented (a name from the token file, never the token), the
    /// peer uid of a Unix-socket client and the subject of a verified client certificate.
    static func record(
        _ request: HTTPRequest, _ response: Response, client: ClientInfo, elapsed: Duration, token: String? = nil,
        to writer: AccessLogWriter
    ) {
        guard writer.isOn else { return }
        let micros = elapsed.components.seconds &* 1_000_000 &+ elapsed.components.attoseconds / 1_000_000_000_000
        let path = (request.path ?? "").prefix { $0 != "?" }
        var certificate: String?
        if case .verified(let subject)? = client.certificate { certificate = subject }
        writer.append(
            AccessLogWriter.Record(
                method: request.method.rawValue, path: path, status: response.status, bytes: response.body.count,
                micros: micros, remote: client.remoteAddress, token: token, uid: client.peerUID, certificate: certificate))
    }

    /// A sink for libmicrohttpd's error messages: warning level, prefixed `libmicrohttpd:`.
    static func libraryLogger(_ logger: Logger) -> @Sendable (String) -> Void {
        { message in logger.warning("libmicrohttpd: \(printable(message))") }
    }

    /// The text with control characters and backslashes written as `\xNN`, so a request cannot forge log lines.
    static func printable(_ text: String) -> String {
        // Almost every path and method needs nothing escaped: one scan of the bytes, no copy.
        if text.utf8.allSatisfy({ $0 >= 0x20 && $0 != 0x7f && $0 != 0x5c }) { return text }
        var result = ""
        for scalar in text.unicodeScalars {
            if scalar.value < 0x20 || scalar.value == 0x7F || scalar == "\\" {
                let hex = String(scalar.value, radix: 16, uppercase: true)
                result += "\\x" + (hex.count < 2 ? "0" + hex : hex)
            } else {
                result.unicodeScalars.append(scalar)
            }
        }
        return result
    }
}
