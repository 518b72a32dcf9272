import HTTPTypes
import QCOW2API
import QCOW2TestSupport
import Testing

@Suite("Host check and CORS: which names and origins the API answers")
struct HostPolicyTests {
    private let loopback = HostPolicy(listeners: [.init(host: "127.0.0.1", port: 8741)])

    @Test func theListenAddressLocalhostAndTheLoopbackLiteralsPassWithAndWithoutThePort() {
        for host in [
            "127.0.0.1", "127.0.0.1:8741", "localhost", "localhost:8741", "LOCALHOST:8741", "localhost.", "[::1]",
            "[::1]:8741",
        ] {
            #expect(loopback.allows(host), "\(host)")
        }
        #expect(loopback.allows(nil))  // HTTP/1.0 without Host: no browser sends that
    }

    @Test func otherNamesOtherPortsAndMalformedValuesAreRefused() {
        for host in [
            "evil.example.com", "evil.example.com:8741", "localhost:8742", "127.0.0.1:80", "127.0.0.2", "[::2]",
            "", ":8741", "localhost:", "localhost:87a1", "localhost:123456", "[::1", "[::1]x", "localhost.evil.com",
            "127.0.0.1.nip.io", String(repeating: "a", count: 400),
        ] {
            #expect(!loopback.allows(host), "\(host)")
        }
    }

    @Test func allowedHostsAddNamesWithAnyListeningPortOrWithTheirOwnPort() {
        let p = HostPolicy(
            listeners: [.init(host: "127.0.0.1", port: 8741), .init(host: "[::1]", port: 9000)],
            extra: ["vmhost1.example.com", "proxy.example.com:443"])
        #expect(p.allows("vmhost1.example.com") && p.allows("VMHOST1.example.com:8741") && p.allows("vmhost1.example.com:9000"))
        #expect(!p.allows("vmhost1.example.com:443"))
        #expect(p.allows("proxy.example.com:443") && !p.allows("proxy.example.com") && !p.allows("proxy.example.com:8741"))
    }

    @Test func aWildcardListenerAcceptsAddressLiteralsButNoOtherName() {
        let p = HostPolicy(listeners: [.init(host: "0.0.0.0", port: 8741)])
        #expect(p.allows("192.0.2.7:8741") && p.allows("10.1.2.3") && p.allows("[2001:db8::1]:8741"))
        #expect(!p.allows("vmhost1.example.com:8741") && !p.allows("192.0.2.7:8742") && !p.allows("192.0.2.256"))
    }

    @Test func anUnknownPortBeforeBindingAcceptsAnyPortForTheNames() {
        let p = HostPolicy(listeners: [.init(host: "127.0.0.1", port: 0)])
        #expect(p.allows("127.0.0.1:40123") && p.allows("localhost:1"))
        #expect(!p.allows("evil.example.com:40123"))
    }

    @Test func allowedHostValuesAreValidated() {
        for good in ["vmhost1", "vmhost1.example.com", "a-b.example", "192.0.2.1", "192.0.2.1:8741", "[::1]", "[2001:db8::1]:443"] {
            #expect(HostPolicy.isValidName(good), "\(good)")
        }
        for bad in ["", "-a.example", "a..b", "a_b.example", "host:0", "host:70000", "[::zz]", "a b", "a/b", "héllo.example", "host:"] {
            #expect(!HostPolicy.isValidName(bad), "\(bad)")
        }
    }

    @Test func corsOriginsAreValidated() {
        for good in ["https://dash.example.com", "http://127.0.0.1:3000", "https://[::1]:8443"] {
            #expect(CORSPolicy.isValidOrigin(good), "\(good)")
        }
        for bad in ["dash.example.com", "https://", "https://dash.example.com/", "https://a@b", "ftp://x", "https://x/y", "*"] {
            #expect(!CORSPolicy.isValidOrigin(bad), "\(bad)")
        }
    }

    @Test func theAPIRefusesAForeignHostWith421AndAnswersPreflightsOfAllowedOriginsOnly() throws {
        let factory = try QemuImageFactory()
        defer { factory.removeDirectory() }
        let api = API(
            catalog: try ImageCatalog(path: factory.directory, watchChanges: false), hosts: loopback,
            cors: CORSPolicy(origins: ["https://dash.example.com"]))
        func request(_ method: HTTPRequest.Method, _ host: String?, _ fields: HTTPFields = [:]) -> Response {
            api.respond(HTTPRequest(method: method, scheme: "http", authority: host, path: "/v1/images", headerFields: fields))
        }
        let refused = request(.get, "evil.example.com:8741")
        #expect(refused.status == 421)
        #expect(String(decoding: refused.body, as: UTF8.self).contains("urn:qcowscope:problem:misdirected-request"))
        #expect(refused.head.headerFields[.contentType] == "application/problem+json")
        #expect(request(.get, "127.0.0.1:8741").status == 200)

        // CORS: the allowed origin is named, another is not; both get Vary: Origin.
        let from = request(.get, "127.0.0.1:8741", [.origin: "https://dash.example.com"])
        #expect(from.head.headerFields[.accessControlAllowOrigin] == "https://dash.example.com")
        #expect(from.head.headerFields[.accessControlExposeHeaders]?.contains("ETag") == true)
        #expect(from.head.headerFields[.vary] == "Origin")
        let other = request(.get, "127.0.0.1:8741", [.origin: "https://evil.example.com"])
        #expect(other.status == 200 && other.head.headerFields[.accessControlAllowOrigin] == nil)

        let preflight = request(
            .options, "127.0.0.1:8741", [.origin: "https://dash.example.com", .accessControlRequestMethod: "GET"])
        #expect(preflight.status == 204)
        #expect(preflight.head.headerFields[.accessControlAllowHeaders]?.contains("Authorization") == true)
        #expect(preflight.head.headerFields[.accessControlAllowMethods] == "GET, HEAD")
        let foreign = request(
            .options, "127.0.0.1:8741", [.origin: "https://evil.example.com", .accessControlRequestMethod: "GET"])
        #expect(foreign.status == 403 && foreign.head.headerFields[.accessControlAllowOrigin] == nil)
        // A plain OPTIONS is still 405, and a preflight through a foreign Host is still 421.
        #expect(request(.options, "127.0.0.1:8741").status == 405)
        #expect(
            request(.options, "evil.example.com", [.origin: "https://dash.example.com", .accessControlRequestMethod: "GET"])
                .status == 421)
    }
}
