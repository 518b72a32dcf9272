import CCurl
import QCOW2API

#if canImport(Glibc)
    import Glibc
#endif

/// A qcowscoped reached over HTTP, HTTPS or its Unix-domain socket (`--server`), through libcurl.
///
/// One connection is kept for every request of a command (pages follow each other on it). Every
/// request is bounded: the whole transfer by the command's `--io-timeout`, the body by
/// ``maximumBody`` bytes; redirects are not followed and only http and https are spoken.
final class RemoteServer {
    /// Largest body read (a page of 10,000 extents is about 1 MB).
    static let maximumBody = 64 << 20
    /// Most bytes all the answers of one command may bring (pages joined by `--all`): a server that
    /// keeps sending `next` pages cannot make the CLI hold more.
    static let maximumTotal = 1 << 30
    private var received = 0

    /// The server as the user gave it, for error lines.
    let name: String
    private let base: String
    private let handle: UnsafeMutableRawPointer
    private var headerList: UnsafeMutablePointer<curl_slist>?
    private let errorBuffer = UnsafeMutablePointer<CChar>.allocate(capacity: Int(CURL_ERROR_SIZE) + 1)
    // libcurl keeps the sinks' addresses between setopt and perform: they live as long as the handle.
    private let body = UnsafeMutablePointer<ccurl_buffer>.allocate(capacity: 1)
    private let head = UnsafeMutablePointer<ccurl_buffer>.allocate(capacity: 1)

    /// What one GET answered.
    struct Reply {
        var status: Int
        var body: [UInt8]
        /// Header fields, names lowercased, in order (the last block when there were several).
        var fields: [(name: String, value: String)]

        func field(_ name: String) -> String? { fields.last { $0.name == name }?.value }
    }

    /// Connects nothing yet: checks the options and reads the token file.
    ///
    /// `server` is `http://HOST[:PORT][/PREFIX]`, `https://...`, `unix:/PATH` (then requests go to
    /// `http://localhost` over that socket) or `https+unix:/PATH` (`https://localhost` over it, for a daemon
    /// with TLS, which it speaks on its socket too).
    init(_ options: ServerOptions, timeout: Double) throws(CLIFailure) {
        guard let server = options.server else { throw CLIFailure(message: "no --server given") }
        name = server
        var unixPath: String?
        if server.hasPrefix("unix:") || server.hasPrefix("https+unix:") {
            // A daemon with --tls-cert speaks TLS on every listener, its Unix socket too: https+unix:.
            let tls = server.hasPrefix("https+")
            let path = String(server.dropFirst(tls ? 11 : 5))
            guard path.hasPrefix("/"), path.utf8.count < 108 else {
                throw CLIFailure(message: "--server \(server): a Unix socket is unix:/ABSOLUTE/PATH (under 108 bytes)")
            }
            unixPath = path
            base = tls ? "https://localhost" : "http://localhost"
        } else if server.hasPrefix("http://") || server.hasPrefix("https://") {
            guard !server.contains("?"), !server.contains("#"), !server.contains(" ") else {
                throw CLIFailure(message: "--server \(server): a server URL has no query, fragment or space")
            }
            var b = server
            while b.hasSuffix("/") { b.removeLast() }
            base = b
        } else {
            throw CLIFailure(message: "--server \(server): expected http://HOST:PORT, https://HOST:PORT, unix:/PATH or https+unix:/PATH")
        }
        if options.cert != nil && options.key == nil || options.key != nil && options.cert == nil {
            throw CLIFailure(message: "--cert and --key go together")
        }
        var headers = ["Accept: application/json", "User-Agent: qcowscope/\(ProductVersion.string)"]
        if let tokenFile = options.tokenFile {
            headers.append("Authorization: Bearer " + (try Self.readToken(tokenFile)))
        }
        _ = ccurl_global_init()
        guard let h = curl_easy_init() else { throw CLIFailure(message: "\(server): libcurl could not start") }
        handle = h
        errorBuffer.initialize(repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
        body.initialize(to: ccurl_buffer(data: nil, length: 0, capacity: 0, maximum: Self.maximumBody, overflow: 0))
        head.initialize(to: ccurl_buffer(data: nil, length: 0, capacity: 0, maximum: 1 << 20, overflow: 0))
        for line in headers { headerList = curl_slist_append(headerList, line) }
        // A timeout that is not a positive number (as for the watchdog) means none: libcurl's 0.
        let ms = timeout.isFinite && timeout > 0 ? Int(min(max(timeout, 0.001), 86_400) * 1000) : 0
        var ok = ccurl_set_headers(h, headerList) == CURLE_OK
        ok = ok && ccurl_set_error_buffer(h, errorBuffer) == CURLE_OK
        ok = ok && ccurl_set_sinks(h, body, head) == CURLE_OK
        ok = ok && ccurl_set_long(h, CURLOPT_NOSIGNAL, 1) == CURLE_OK
        ok = ok && ccurl_set_long(h, CURLOPT_TIMEOUT_MS, ms) == CURLE_OK
        ok = ok && ccurl_set_long(h, CURLOPT_CONNECTTIMEOUT_MS, ms == 0 ? 10_000 : min(ms, 10_000)) == CURLE_OK
        ok = ok && ccurl_set_long(h, CURLOPT_FOLLOWLOCATION, 0) == CURLE_OK
        ok = ok && ccurl_set_string(h, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK
        if let unixPath { ok = ok && ccurl_set_string(h, CURLOPT_UNIX_SOCKET_PATH, unixPath) == CURLE_OK }
        if let f = options.cacert { ok = ok && ccurl_set_string(h, CURLOPT_CAINFO, f) == CURLE_OK }
        if let f = options.cert { ok = ok && ccurl_set_string(h, CURLOPT_SSLCERT, f) == CURLE_OK }
        if let f = options.key { ok = ok && ccurl_set_string(h, CURLOPT_SSLKEY, f) == CURLE_OK }
        guard ok else { throw CLIFailure(message: "\(server): libcurl refused an option") }
    }

    deinit {
        curl_easy_cleanup(handle)
        curl_slist_free_all(headerList)
        errorBuffer.deallocate()
        ccurl_buffer_reset(body)
        ccurl_buffer_reset(head)
        body.deallocate()
        head.deallocate()
    }

    /// The token in `file`: its first line, without surrounding blanks.
    static func readToken(_ file: String) throws(CLIFailure) -> String {
        let fd = open(file, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw CLIFailure(message: "--token-file \(file): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: 4097)
        let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n >= 0 else { throw CLIFailure(message: "--token-file \(file): \(String(cString: strerror(errno)))") }
        guard n < bytes.count else { throw CLIFailure(message: "--token-file \(file): longer than 4096 bytes") }
        let text = String(decoding: bytes[..<n], as: UTF8.self)
        let line = text.split(separator: "\n", omittingEmptySubsequences: false).first ?? ""
        let token = line.trimmingBlanks
        guard !token.isEmpty, token.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f }) else {
            throw CLIFailure(message: "--token-file \(file): the first line must hold the token (printable ASCII, no spaces)")
        }
        return token
    }

    /// GETs `target` (a path with its query, from `/`); a transport failure names the server.
    func get(_ target: String) throws(CLIFailure) -> Reply {
        defer {
            ccurl_buffer_reset(body)
            ccurl_buffer_reset(head)
        }
        errorBuffer[0] = 0
        guard ccurl_set_string(handle, CURLOPT_URL, base + target) == CURLE_OK else {
            throw CLIFailure(message: "\(name): libcurl refused the URL \(base + target)")
        }
        let code = curl_easy_perform(handle)
        guard code == CURLE_OK else {
            if body.pointee.overflow != 0 { throw CLIFailure(message: "\(name): the answer to \(target) is larger than \(Self.maximumBody) bytes") }
            let detail = errorBuffer[0] != 0 ? String(cString: errorBuffer) : String(cString: curl_easy_strerror(code))
            throw CLIFailure(message: "\(name): \(detail)")
        }
        let b = body.pointee
        let h = head.pointee
        received += b.length
        guard received <= Self.maximumTotal else {
            throw CLIFailure(message: "\(name): the answers add up to more than \(Self.maximumTotal) bytes; ask for fewer pages (--limit)")
        }
        let bytes = b.data.map { Array(UnsafeBufferPointer(start: UnsafeRawPointer($0).assumingMemoryBound(to: UInt8.self), count: b.length)) } ?? []
        let headText = h.data.map {
            String(decoding: UnsafeBufferPointer(start: UnsafeRawPointer($0).assumingMemoryBound(to: UInt8.self), count: h.length), as: UTF8.self)
        } ?? ""
        return Reply(status: ccurl_response_code(handle), body: bytes, fields: Self.fields(headText))
    }

    /// The header fields of the last response block in `text` (a 100 Continue block comes first).
    static func fields(_ text: String) -> [(name: String, value: String)] {
        var out: [(name: String, value: String)] = []
        // "\r\n" is one Character in Swift: split on both spellings of a line end.
        for line in text.split(whereSeparator: { $0 == "\r\n" || $0 == "\n" }) {
            if line.hasPrefix("HTTP/") {
                out.removeAll()
                continue
            }
            guard let colon = line.firstIndex(of: ":") else { continue }
            out.append((line[..<colon].lowercased(), String(line[line.index(after: colon)...]).trimmingBlanks))
        }
        return out
    }
}

extension StringProtocol {
    /// The text without leading and trailing spaces, tabs and carriage returns.
    var trimmingBlanks: String {
        let blank: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\r" }
        guard let first = firstIndex(where: { !blank($0) }), let last = lastIndex(where: { !blank($0) }) else { return "" }
        return String(self[first...last])
    }
}
