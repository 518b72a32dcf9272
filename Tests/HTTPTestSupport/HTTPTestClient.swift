import Glibc

/// A response read by ``HTTPTestClient``.
package struct HTTPTestResponse: Sendable {
    /// The status code from the status line.
    package var status: Int
    /// Header fields in the order received.
    package var headers: [(name: String, value: String)]
    /// The body bytes (empty for `HEAD`).
    package var body: [UInt8]

    /// The body as UTF-8 text.
    package var text: String { String(decoding: body, as: UTF8.self) }

    /// The first header called `name`, compared case-insensitively.
    package func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }
}

/// Why an ``HTTPTestClient`` call failed.
package struct HTTPTestClientError: Error, CustomStringConvertible {
    /// What went wrong, with the errno text when there is one.
    package var description: String

    /// Creates an error.
    package init(description: String) {
        self.description = description
    }
}

/// A minimal blocking HTTP/1.1 client over one TCP connection, for tests.
///
/// Every socket call has a timeout (`SO_RCVTIMEO`/`SO_SNDTIMEO`), so a test fails instead of hanging.
/// The connection is kept between requests: sending two requests through one client proves keep-alive.
package final class HTTPTestClient {
    /// The connected socket, or -1 once closed.
    private(set) var fd: Int32
    /// Bytes received but not yet consumed by a response.
    private var buffer: [UInt8] = []
    /// The `Host` field ``request(_:_:headers:body:)`` sends: the address connected to, with its port.
    package let hostField: String

    /// Connects to a numeric IPv4 or IPv6 host.
    package init(host: String, port: UInt16, timeoutSeconds: Int = 10) throws(HTTPTestClientError) {
        let isV6 = host.contains(":")
        hostField = (isV6 ? "[\(host)]" : host) + ":\(port)"
        fd = socket(isV6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Self.failure("socket") }
        setTimeout(seconds: timeoutSeconds)
        let result: Int32
        if isV6 {
            var address = sockaddr_in6()
            address.sin6_family = sa_family_t(AF_INET6)
            address.sin6_port = port.bigEndian
            _ = inet_pton(AF_INET6, host, &address.sin6_addr)
            result = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size))
                }
            }
        } else {
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = port.bigEndian
            _ = inet_pton(AF_INET, host, &address.sin_addr)
            result = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        }
        guard result == 0 else {
            let error = Self.failure("connect to \(host):\(port)")
            Glibc.close(fd)
            fd = -1
            throw error
        }
    }

    deinit { close() }

    /// Sets the send and receive timeout of every later socket call.
    package func setTimeout(seconds: Int) {
        var timeout = timeval(tv_sec: seconds, tv_usec: 0)
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Closes the connection.
    package func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }

    /// Sends bytes as they are.
    package func send(_ bytes: [UInt8]) throws(HTTPTestClientError) {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes[offset...].withUnsafeBytes {
                Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
            }
            if sent < 0 {
                if errno == EINTR { continue }
                throw Self.failure("send")
            }
            offset += sent
        }
    }

    /// Sends text as they are (UTF-8).
    package func send(_ text: String) throws(HTTPTestClientError) {
        try send(Array(text.utf8))
    }

    /// Sends one request with `Host` (``hostField`` unless `headers` has one) and, for a body,
    /// `Content-Length`, then reads the response.
    package func request(
        _ method: String, _ target: String, headers: [(String, String)] = [], body: [UInt8] = []
    ) throws(HTTPTestClientError) -> HTTPTestResponse {
        var head = "\(method) \(target) HTTP/1.1\r\n"
        if !headers.contains(where: { $0.0.lowercased() == "host" }) { head += "Host: \(hostField)\r\n" }
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        if !body.isEmpty { head += "Content-Length: \(body.count)\r\n" }
        head += "\r\n"
        try send(Array(head.utf8) + body)
        return try readResponse(method: method)
    }

    /// Reads one response; for `HEAD` no body is read whatever `Content-Length` says.
    package func readResponse(method: String = "GET") throws(HTTPTestClientError) -> HTTPTestResponse {
        let headEnd = try readUntil([13, 10, 13, 10])
        let headText = String(decoding: buffer[..<headEnd], as: UTF8.self)
        buffer.removeFirst(headEnd + 4)
        var lines = headText.split(separator: "\r\n", omittingEmptySubsequences: false).map(String.init)
        let statusLine = lines.removeFirst()
        let parts = statusLine.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let status = Int(parts[1]) else {
            throw HTTPTestClientError(description: "malformed status line '\(statusLine)'")
        }
        var headers: [(name: String, value: String)] = []
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else {
                throw HTTPTestClientError(description: "malformed header line '\(line)'")
            }
            let value = line[line.index(after: colon)...].drop { $0 == " " || $0 == "\t" }
            headers.append((String(line[..<colon]), String(value)))
        }
        var response = HTTPTestResponse(status: status, headers: headers, body: [])
        if method == "HEAD" || status == 204 || status == 304 || (100..<200).contains(status) { return response }
        if response.header("Transfer-Encoding")?.lowercased() == "chunked" {
            while true {
                let lineEnd = try readUntil([13, 10])
                let sizeText = String(decoding: buffer[..<lineEnd], as: UTF8.self).split(separator: ";")[0]
                buffer.removeFirst(lineEnd + 2)
                guard let size = Int(sizeText.trimmingSpaces, radix: 16) else {
                    throw HTTPTestClientError(description: "malformed chunk size '\(sizeText)'")
                }
                try fill(size + 2)
                response.body += buffer[..<size]
                buffer.removeFirst(size + 2)
                if size == 0 { break }
            }
        } else if let lengthText = response.header("Content-Length") {
            guard let length = Int(lengthText) else {
                throw HTTPTestClientError(description: "malformed Content-Length '\(lengthText)'")
            }
            try fill(length)
            response.body = Array(buffer[..<length])
            buffer.removeFirst(length)
        } else {
            while try receive() > 0 {}
            response.body = buffer
            buffer = []
        }
        return response
    }

    /// Whether the server closed the connection: a read returns end-of-file or a reset within the timeout.
    package func waitForClose() -> Bool {
        do {
            while true {
                if try receive() == 0 { return true }
            }
        } catch {
            return !error.description.hasPrefix("timed out")
        }
    }

    /// Reads until `buffer` holds `needle`; returns the index where it starts.
    private func readUntil(_ needle: [UInt8]) throws(HTTPTestClientError) -> Int {
        var searchFrom = 0
        while true {
            if buffer.count >= needle.count {
                for start in searchFrom...(buffer.count - needle.count)
                where buffer[start..<(start + needle.count)].elementsEqual(needle) {
                    return start
                }
                searchFrom = buffer.count - needle.count + 1
            }
            if try receive() == 0 { throw HTTPTestClientError(description: "connection closed by the server") }
        }
    }

    /// Reads until `buffer` holds at least `count` bytes.
    private func fill(_ count: Int) throws(HTTPTestClientError) {
        while buffer.count < count {
            if try receive() == 0 { throw HTTPTestClientError(description: "connection closed by the server") }
        }
    }

    /// One `recv` into `buffer`; returns the byte count, 0 at end-of-file.
    private func receive() throws(HTTPTestClientError) -> Int {
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count >= 0 {
                buffer += chunk[..<count]
                return count
            }
            if errno == EINTR { continue }
            if errno == EAGAIN || errno == EWOULDBLOCK { throw HTTPTestClientError(description: "timed out reading") }
            throw Self.failure("recv")
        }
    }

    /// An error naming the call and the current errno.
    private static func failure(_ call: String) -> HTTPTestClientError {
        HTTPTestClientError(description: "\(call) failed: \(String(cString: strerror(errno)))")
    }
}

extension Substring {
    /// The text without leading and trailing spaces.
    fileprivate var trimmingSpaces: String {
        String(drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
    }
}
