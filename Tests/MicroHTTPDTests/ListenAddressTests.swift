import MicroHTTPD
import Testing

@Suite("ListenAddress and configuration")
struct ListenAddressTests {
    @Test(arguments: [
        ("127.0.0.1:8741", "127.0.0.1", 8741, ListenAddress.Family.ipv4),
        ("0.0.0.0:0", "0.0.0.0", 0, .ipv4),
        ("[::1]:8741", "::1", 8741, .ipv6),
        ("[::]:65535", "::", 65535, .ipv6),
    ])
    func parsesValidAddresses(text: String, host: String, port: Int, family: ListenAddress.Family) throws {
        let address = try ListenAddress(parsing: text)
        #expect(address.host == host)
        #expect(Int(address.port) == port)
        #expect(address.family == family)
        #expect(address.description == text)
    }

    @Test(arguments: [
        "localhost:8741", "127.0.0.1", "::1:8741", "[::1]", "[::1]8741", "127.0.0.1:65536", "127.0.0.1:-1",
        "127.0.0.1:", "[127.0.0.1]:80", "300.1.1.1:80", ":80", "",
    ])
    func rejectsInvalidAddresses(text: String) {
        let error = #expect(throws: HTTPServerError.self) { _ = try ListenAddress(parsing: text) }
        #expect(error?.code == .invalidAddress)
        #expect(error?.description.hasPrefix("invalid listen address '\(text)'") == true)
    }

    @Test func rejectsOutOfRangeConfiguration() throws {
        let address = try ListenAddress(parsing: "127.0.0.1:0")
        let cases: [HTTPServerConfiguration] = [
            HTTPServerConfiguration(),
            HTTPServerConfiguration(listenAddresses: [address], threadPoolSize: 0),
            HTTPServerConfiguration(listenAddresses: [address], connectionLimit: 0),
            HTTPServerConfiguration(listenAddresses: [address], connectionTimeoutSeconds: -1),
        ]
        for configuration in cases {
            let error = #expect(throws: HTTPServerError.self) {
                _ = try HTTPServer(configuration: configuration) { _, _ in reply(200) }
            }
            #expect(error?.code == .invalidConfiguration)
        }
    }
}
