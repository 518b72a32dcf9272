import Logging
import MicroHTTPD

/// Wraps the router with an access log line per request, and routes libmicrohttpd's messages to the logger.
///
/// The closures are built here, in a nonisolated type, never in `main.swift`: they run on
/// libmicrohttpd's threads, where a main-actor closure would trap.
enum AccessLog {
    /// A handler that calls `route` and logs `METHOD raw-path status bytes duration` at info level.
    static func wrap(
        _ route: @escaping @Sendable (HTTPRequest) -> HTTPResponse, logger: Logger
    ) -> @Sendable (HTTPRequest) -> HTTPResponse {
        let clock = ContinuousClock()
        return { request in
            let start = clock.now
            let response = route(request)
            let elapsed = start.duration(to: clock.now)
            let micros = elapsed.components.seconds * 1_000_000 + elapsed.components.attoseconds / 1_000_000_000_000
            let line = "\(printable(request.method)) \(printable(request.rawPath)) \(response.status)"
            logger.info("\(line) \(response.body.count)B \(micros)us", metadata: ["remote": "\(request.remoteAddress)"])
            return response
        }
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
