#if canImport(Glibc)
    import Glibc
#endif

/// Which `Host` a request may name: the defence against DNS rebinding.
///
/// A web page can make a browser send requests to 127.0.0.1 under a name the attacker controls
/// (its DNS answer rebinds to the loopback address); such a request carries that name in `Host`.
/// Only the names this policy holds are answered, each without a port or with a port the daemon
/// listens on: the literal listen addresses, `localhost`, `127.0.0.1` and `[::1]`, and the names
/// given with `--allowed-host` (a name given with a port is allowed with that port only). A daemon
/// listening on a wildcard address (`0.0.0.0`, `[::]`) also accepts any IP address literal, which
/// no DNS answer can rebind. Comparison ignores ASCII case and one trailing dot. A request without
/// `Host` (HTTP/1.0) is answered: no browser sends one.
public struct HostPolicy: Sendable, Equatable {
    /// One address the daemon listens on: its host as written in a URL (IPv6 in brackets) and port.
    public struct Listener: Sendable, Equatable {
        /// The host, e.g. `127.0.0.1` or `[::1]`.
        public var host: String
        /// The port; 0 when not known before binding (any port is then accepted for the names).
        public var port: UInt16

        /// Creates a listener.
        public init(host: String, port: UInt16) {
            self.host = host
            self.port = port
        }
    }

    /// Names allowed without a port or with a listening port (lowercase, no trailing dot).
    private var names: Set<String> = []
    /// `name:port` values allowed exactly (from `--allowed-host` with a port).
    private var exact: Set<String> = []
    /// The ports the daemon listens on.
    private var ports: Set<UInt16> = []
    /// Whether some listener's port is not known (port 0): then any port passes.
    private var anyPort = false
    /// Whether the daemon listens on a wildcard address: then any IP literal passes.
    private var anyAddressLiteral = false
    /// Every allowed value spelled as clients usually send it (each name alone and with each port):
    /// one hash lookup answers a request, without splitting or copying the field.
    private var usual: Set<String> = []

    /// The names allowed (for the problem's detail and the docs), sorted.
    public var allowedNames: [String] { (names.sorted() + exact.sorted()) }

    /// A policy for `listeners` and the `extra` names (`NAME` or `NAME:PORT`, already validated).
    public init(listeners: [Listener], extra: [String] = []) {
        names = ["localhost", "127.0.0.1", "[::1]"]
        for l in listeners {
            let host = Self.normalised(l.host)
            if host == "0.0.0.0" || host == "[::]" {
                anyAddressLiteral = true
            } else {
                names.insert(host)
            }
            if l.port == 0 { anyPort = true } else { ports.insert(l.port) }
        }
        for e in extra {
            guard let (host, port) = Self.split(e) else { continue }
            if let port { exact.insert(Self.normalised(host) + ":" + port) } else { names.insert(Self.normalised(host)) }
        }
        usual = exact.union(names)
        for n in names {
            for p in ports { usual.insert(n + ":" + String(p)) }
        }
    }

    /// Whether a request whose `Host` field is `authority` (nil: absent) is answered.
    public func allows(_ authority: String?) -> Bool {
        guard let authority else { return true }
        if usual.contains(authority) { return true }
        guard authority.utf8.count <= 300, let (rawHost, port) = Self.split(authority) else { return false }
        let host = Self.normalised(rawHost)
        if let port {
            if exact.contains(host + ":" + port) { return true }
            guard let p = UInt16(port), anyPort || ports.contains(p) else { return false }
        }
        return names.contains(host) || (anyAddressLiteral && Self.isAddressLiteral(host))
    }

    /// Whether `text` is a valid `--allowed-host` value: a DNS name, an IPv4 literal or a bracketed
    /// IPv6 literal, optionally with `:PORT` (1-65535).
    public static func isValidName(_ text: String) -> Bool {
        guard text.utf8.count <= 260, let (host, port) = split(text) else { return false }
        if let port, UInt16(port).map({ $0 > 0 }) != true { return false }
        if host.hasPrefix("[") { return isAddressLiteral(normalised(host)) }
        let labels = host.split(separator: ".", omittingEmptySubsequences: false)
        return !host.isEmpty && host.utf8.count <= 253
            && labels.allSatisfy { l in
                !l.isEmpty && l.utf8.count <= 63 && l.utf8.first != UInt8(ascii: "-") && l.utf8.last != UInt8(ascii: "-")
                    && l.utf8.allSatisfy { $0 == UInt8(ascii: "-") || (0x30...0x39).contains($0) || (0x61...0x7a).contains($0 | 0x20) }
            }
    }

    /// `host[:port]` or `[v6][:port]` split into the host and the port's digits; nil when malformed.
    private static func split(_ text: String) -> (host: String, port: String?)? {
        let u = Array(text.utf8)
        var hostEnd = u.count
        var portStart: Int? = nil
        if u.first == UInt8(ascii: "[") {
            guard let close = u.firstIndex(of: UInt8(ascii: "]")) else { return nil }
            hostEnd = close + 1
            if hostEnd < u.count {
                guard u[hostEnd] == UInt8(ascii: ":") else { return nil }
                portStart = hostEnd + 1
            }
        } else if let colon = u.firstIndex(of: UInt8(ascii: ":")) {
            hostEnd = colon
            portStart = colon + 1
        }
        guard hostEnd > 0 else { return nil }
        let host = String(decoding: u[..<hostEnd], as: UTF8.self)
        guard let portStart else { return (host, nil) }
        let port = u[portStart...]
        guard !port.isEmpty, port.count <= 5, port.allSatisfy({ (0x30...0x39).contains($0) }) else { return nil }
        return (host, String(decoding: port, as: UTF8.self))
    }

    /// ASCII lowercase, without one trailing dot.
    private static func normalised(_ host: String) -> String {
        var bytes = Array(host.utf8).map { (0x41...0x5a).contains($0) ? $0 | 0x20 : $0 }
        if bytes.count > 1, bytes.last == UInt8(ascii: ".") { bytes.removeLast() }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Whether `host` is a dotted IPv4 address or a bracketed IPv6 address.
    private static func isAddressLiteral(_ host: String) -> Bool {
        var buffer = [UInt8](repeating: 0, count: 16)
        if host.hasPrefix("[") && host.hasSuffix("]") && host.utf8.count > 2 {
            let inner = String(host.dropFirst().dropLast())
            return unsafe inet_pton(AF_INET6, inner, &buffer) == 1
        }
        return unsafe inet_pton(AF_INET, host, &buffer) == 1
    }
}
