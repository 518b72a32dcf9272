#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif
import Glibc

/// The JSON configuration file: every key optional, unknown keys rejected.
///
/// Keys: `images`, `listen` (array of `HOST:PORT`), `log_level`, `access_log`, `threads`, `connection_limit`,
/// `per_ip_connection_limit`, `connection_timeout`, `tls_cert`, `tls_key`, `token_file`, `open_health`,
/// `open_metrics`, `insecure_no_auth`, `metrics_max_images`, `io_timeout`, `io_threads`, `check_memory`, `scrub`, `scrub_rate`,
/// `allowed_hosts`, `cors_origins` (arrays of strings), `socket_mode`, `socket_group`, `tls_client_ca` (strings). `null` counts as absent. See `deploy/qcowscoped.json`.
struct ConfigFile: Decodable, Equatable {
    /// `images`: the images directory.
    var images: String?
    /// `listen`: addresses, `IPv4:PORT` or `[IPv6]:PORT`.
    var listen: [String]?
    /// `log_level`: trace, debug, info, notice, warning, error or critical.
    var logLevel: String?
    /// `access_log`: off, stderr or a file path.
    var accessLog: String?
    /// `threads`: threads per listening socket; 0 means one per processor.
    var threads: Int?
    /// `connection_limit`: connections served at once per listening socket.
    var connectionLimit: Int?
    /// `per_ip_connection_limit`: connections per client address; 0 means no limit.
    var perIPConnectionLimit: Int?
    /// `connection_timeout`: seconds before an idle connection is closed; 0 means never.
    var connectionTimeout: Int?
    /// `tls_cert`: PEM certificate chain file; with `tls_key`, serve HTTPS.
    var tlsCert: String?
    /// `tls_key`: PEM private key file of `tls_cert`.
    var tlsKey: String?
    /// `token_file`: file holding the bearer token clients must send.
    var tokenFile: String?
    /// `open_health`: serve `/healthz` without the token.
    var openHealth: Bool?
    /// `open_metrics`: serve `/metrics` without the token.
    var openMetrics: Bool?
    /// `insecure_no_auth`: allow listening on a non-loopback address without a token.
    var insecureNoAuth: Bool?
    /// `metrics_max_images`: images with their own series in `/metrics`.
    var metricsMaxImages: Int?
    /// `io_timeout`: seconds an answer that reads an image may take.
    var ioTimeout: Double?
    /// `io_threads`: worker threads for file reads and parsing.
    var ioThreads: Int?
    /// `check_memory`: MiB of counters one refcount check may use.
    var checkMemory: Int?
    /// `scrub`: whether the background scrubber checks every image (`true` by default).
    var scrub: Bool?
    /// `scrub_rate`: bytes of metadata per second the scrubber reads at most; 0 means no limit.
    var scrubRate: Int?
    /// `allowed_hosts`: more `Host` names answered (`NAME` or `NAME:PORT`), besides the listen addresses and localhost.
    var allowedHosts: [String]?
    /// `cors_origins`: origins (`https://host[:port]`) whose pages may read the answers.
    var corsOrigins: [String]?
    /// `socket_mode`: permissions of a `unix:` listen socket, octal text (`"0660"`).
    var socketMode: String?
    /// `socket_group`: group name or number of a `unix:` listen socket.
    var socketGroup: String?
    /// `tls_client_ca`: PEM file of the CAs whose client certificates are required.
    var tlsClientCA: String?

    /// The keys the file may contain, in documentation order.
    static let knownKeys = [
        "images", "listen", "log_level", "access_log", "threads", "connection_limit", "per_ip_connection_limit",
        "connection_timeout", "tls_cert", "tls_key", "token_file", "open_health", "open_metrics",
        "insecure_no_auth", "metrics_max_images", "io_timeout", "io_threads", "check_memory", "scrub", "scrub_rate",
        "allowed_hosts", "cors_origins", "socket_mode", "socket_group", "tls_client_ca",
    ]

    /// A coding key for any string, so unknown keys can be found.
    private struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    /// Creates an empty file (every key absent).
    init() {}

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: Key.self)
        for key in container.allKeys where !Self.knownKeys.contains(key.stringValue) {
            throw StartupError(
                "unknown key '\(key.stringValue)' (known keys: \(Self.knownKeys.joined(separator: ", ")))")
        }
        images = try container.decodeIfPresent(String.self, forKey: Key(stringValue: "images"))
        listen = try container.decodeIfPresent([String].self, forKey: Key(stringValue: "listen"))
        logLevel = try container.decodeIfPresent(String.self, forKey: Key(stringValue: "log_level"))
        accessLog = try container.decodeIfPresent(String.self, forKey: Key(stringValue: "access_log"))
        threads = try container.decodeIfPresent(Int.self, forKey: Key(stringValue: "threads"))
        connectionLimit = try container.decodeIfPresent(Int.self, forKey: Key(stringValue: "connection_limit"))
        perIPConnectionLimit = try container.decodeIfPresent(
            Int.self, forKey: Key(stringValue: "per_ip_connection_limit"))
        connectionTimeout = try container.decodeIfPresent(Int.self, forKey: Key(stringValue: "connection_timeout"))
        tlsCert = try container.decodeIfPresent(String.self, forKey: Key(stringValue: "tls_cert"))
        tlsKey = try container.decodeIfPresent(String.self, forKey: Key(stringValue: "tls_key"))
        tokenFile = try container.decodeIfPresent(String.self, forKey: Key(stringValue: "token_file"))
        openHealth = try container.decodeIfPresent(Bool.self, forKey: Key(stringValue: "open_health"))
        openMetrics = try container.decodeIfPresent(Bool.self, forKey: Key(stringValue: "open_metrics"))
        insecureNoAuth = try container.decodeIfPresent(Bool.self, forKey: Key(stringValue: "insecure_no_auth"))
        metricsMaxImages = try container.decodeIfPresent(Int.self, forKey: Key(stringValue: "metrics_max_images"))
        ioTimeout = try container.decodeIfPresent(Double.self, forKey: Key(stringValue: "io_timeout"))
        ioThreads = try container.decodeIfPresent(Int.self, forKey: Key(stringValue: "io_threads"))
        checkMemory = try container.decodeIfPresent(Int.self, forKey: Key(stringValue: "check_memory"))
        scrub = try container.decodeIfPresent(Bool.self, forKey: Key(stringValue: "scrub"))
        scrubRate = try container.decodeIfPresent(Int.self, forKey: Key(stringValue: "scrub_rate"))
        allowedHosts = try container.decodeIfPresent([String].self, forKey: Key(stringValue: "allowed_hosts"))
        corsOrigins = try container.decodeIfPresent([String].self, forKey: Key(stringValue: "cors_origins"))
        socketMode = try container.decodeIfPresent(String.self, forKey: Key(stringValue: "socket_mode"))
        socketGroup = try container.decodeIfPresent(String.self, forKey: Key(stringValue: "socket_group"))
        tlsClientCA = try container.decodeIfPresent(String.self, forKey: Key(stringValue: "tls_client_ca"))
    }

    /// Reads and decodes the file at `path`.
    ///
    /// - Throws: ``StartupError`` naming the file and the problem: unreadable, not JSON, not an object,
    ///   an unknown key, or a value of the wrong type.
    static func load(path: String) throws(StartupError) -> ConfigFile {
        let bytes = try SmallFile.read(path, what: "config file")
        do {
            return try JSONDecoder().decode(ConfigFile.self, from: Data(bytes))
        } catch let error as StartupError {
            throw StartupError("config file '\(path)': \(error.description)")
        } catch let DecodingError.typeMismatch(type, context) {
            throw StartupError("config file '\(path)': \(describe(context.codingPath)) \(expectation(for: type))")
        } catch let DecodingError.valueNotFound(type, context) {
            throw StartupError("config file '\(path)': \(describe(context.codingPath)) \(expectation(for: type))")
        } catch let DecodingError.dataCorrupted(context) where !context.codingPath.isEmpty {
            throw StartupError("config file '\(path)': \(describe(context.codingPath)) has an invalid value")
        } catch {
            throw StartupError("config file '\(path)' is not valid JSON")
        }
    }

    /// `key 'threads'`, `key 'listen' item 2` or `the top level`.
    private static func describe(_ path: [any CodingKey]) -> String {
        guard let first = path.first else { return "the top level" }
        var text = "key '\(first.stringValue)'"
        if path.count > 1, let index = path[1].intValue { text += " item \(index + 1)" }
        return text
    }

    /// The expectation a value of `type` failed, for example `must be an integer`.
    private static func expectation(for type: Any.Type) -> String {
        switch type {
        case is String.Type: return "must be a string"
        case is Int.Type: return "must be an integer"
        case is Bool.Type: return "must be true or false"
        case is [String].Type: return "must be an array of strings"
        default: return "must be a JSON object"
        }
    }
}
