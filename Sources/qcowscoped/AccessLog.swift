import HTTPTypes
import Logging
import MicroHTTPD
import QCOW2API

/// The access log line of every request, and libmicrohttpd's messages routed to the logger.
enum AccessLog {
    /// Logs `METHOD raw-path status bytes duration` at info level, with the client's address and the
    /// name of the bearer token it presented (a name from the token file, never the token).
    static func record(
        _ request: HTTPRequest, _ response: Response, client: ClientInfo, elapsed: Duration, token: String? = nil, logger: Logger
    ) {
        guard logger.logLevel <= .info else { return }
        let micros = elapsed.components.seconds * 1_000_000 + elapsed.components.attoseconds / 1_000_000_000_000
        let path = (request.path ?? "").prefix { $0 != "?" }
        let line = "\(printable(request.method.rawValue)) \(printable(String(path))) \(response.status)"
        var metadata: Logger.Metadata = ["remote": "\(client.remoteAddress)"]
        if let token { metadata["token"] = "\(token)" }
        if let uid = client.peerUID { metadata["uid"] = "\(uid)" }
        if case .verified(let subject)? = client.certificate { metadata["cert"] = "\(printable(subject))" }
        logger.info("\(line) \(response.body.count)B \(micros)us", metadata: metadata)
    }

    /// A sink for libmicrohttpd's error messages: warning level, prefixed `libmicrohttpd:`.
    static func libraryLogger(_ logger: Logger) -> @Sendable (String) -> Void {
        { message in logger.warning("libmicrohttpd: \(printable(message))") }
    }

    /// The text with control characters and backslashes written as `\xNN`, so a request cannot forge log lines.
    static func printable(_ text: String) -> String {
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
