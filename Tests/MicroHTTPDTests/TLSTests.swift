import HTTPTestSupport
import Foundation
import Glibc
import MicroHTTPD
import ProcessTestSupport
import Testing

/// A throw-away CA and server certificates made with `openssl` (EC P-256, valid two days).
final class TestPKI {
    /// The directory holding every file; removed on deinit.
    let directory: String
    /// The CA certificate clients trust.
    var caPath: String { directory + "/ca.pem" }

    /// Makes the CA.
    init() throws {
        directory = try scratchDirectory()
        try runTool(
            "openssl",
            [
                "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
                directory + "/ca.key", "-out", caPath, "-days", "2", "-subj", "/CN=qcowscope-test-ca",
            ]
        ).check()
        try "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
            .write(toFile: directory + "/leaf.ext", atomically: true, encoding: .utf8)
    }

    deinit { try? FileManager.default.removeItem(atPath: directory) }

    /// Issues a server certificate with common name `name` for 127.0.0.1, ::1 and localhost.
    ///
    /// - Returns: the paths of the certificate and its key.
    @discardableResult
    func issue(_ name: String) throws -> (certificate: String, key: String) {
        let base = directory + "/" + name
        try runTool(
            "openssl",
            [
                "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
                base + ".key", "-out", base + ".csr", "-subj", "/CN=" + name,
            ]
        ).check()
        try runTool(
            "openssl",
            [
                "x509", "-req", "-in", base + ".csr", "-CA", caPath, "-CAkey", directory + "/ca.key", "-CAcreateserial",
                "-out", base + ".pem", "-days", "2", "-extfile", directory + "/leaf.ext",
            ]
        ).check()
        return (base + ".pem", base + ".key")
    }

    /// The credentials of an issued certificate.
    func credentials(_ name: String) throws -> TLSCredentials {
        TLSCredentials(
            certificateChainPEM: Array(try Data(contentsOf: URL(fileURLWithPath: directory + "/\(name).pem"))),
            privateKeyPEM: Array(try Data(contentsOf: URL(fileURLWithPath: directory + "/\(name).key"))))
    }
}

/// A failed or missing external tool.
struct ToolError: Error, CustomStringConvertible {
    var description: String
}

/// What an external tool printed and returned.
struct ToolResult {
    var status: Int32
    var stdout: String
    var stderr: String

    /// Throws unless the tool exited 0.
    @discardableResult
    func check() throws -> ToolResult {
        guard status == 0 else { throw ToolError(description: "exit \(status): \(stderr)") }
        return self
    }
}

/// The path of `tool` on `PATH`, or nil.
func toolPath(_ tool: String) -> String? { ChildProcess.locate(tool) }

/// Runs a tool to completion (stdin from /dev/null) and collects its output.
func runTool(_ tool: String, _ arguments: [String]) throws -> ToolResult {
    guard let path = toolPath(tool) else {
        throw ToolError(description: "\(tool) not found on PATH (Tests/Scripts/install-deps.sh installs it)")
    }
    let result = try ChildProcess.run(path, arguments, timeout: 60)
    return ToolResult(status: result.signaled ? 128 + result.status : result.status, stdout: result.stdout, stderr: result.stderr)
}

/// A new empty directory under /tmp.
func scratchDirectory() throws -> String {
    var template = Array("/tmp/qcowscope-tls-XXXXXX".utf8CString)
    guard let made = template.withUnsafeMutableBufferPointer({ $0.baseAddress.flatMap { mkdtemp($0) } }) else {
        throw ToolError(description: "mkdtemp failed")
    }
    return String(cString: made)
}

/// `curl` over HTTPS trusting `ca`: the exit status, the body, and the `Subject:` lines of the server's chain.
func curlTLS(_ url: String, ca: String) throws -> (status: Int32, body: String, subjects: [String]) {
    let result = try runTool("curl", ["-sS", "--max-time", "10", "--cacert", ca, "-w", "\n%{certs}", url])
    let parts = result.stdout.components(separatedBy: "\n")
    let subjects = parts.filter { $0.hasPrefix("Subject:") }
    return (result.status, parts.first ?? "", subjects)
}

@Suite("HTTPServer over TLS (GnuTLS through libmicrohttpd)")
struct TLSTests {
    /// A TLS server on 127.0.0.1 with the certificate `name` of `pki`.
    private func startTLSServer(_ pki: TestPKI, _ name: String) throws -> HTTPServer {
        let credentials = try pki.credentials(name)
        return try startServer { $0.tls = credentials }
    }

    @Test func libmicrohttpdHasTLS() {
        #expect(TLSCredentials.isSupported)
    }

    @Test func servesHTTPSAndRefusesPlainHTTP() throws {
        let pki = try TestPKI()
        try pki.issue("server-1")
        let server = try startTLSServer(pki, "server-1")
        #expect(server.usesTLS)
        let port = server.boundAddresses[0].port
        let answer = try curlTLS("https://127.0.0.1:\(port)/hello", ca: pki.caPath)
        #expect(answer.status == 0)
        #expect(answer.body == "GET /hello ?<none> 127.0.0.1")
        #expect(answer.subjects.first?.contains("CN = server-1") == true)

        // Plain HTTP to the TLS port gets no HTTP response.
        let plain = try HTTPTestClient(host: "127.0.0.1", port: port, timeoutSeconds: 5)
        try plain.send("GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
        #expect(throws: HTTPTestClientError.self) { _ = try plain.readResponse() }
        // And curl over plain HTTP fails too.
        #expect(try runTool("curl", ["-sS", "--max-time", "5", "http://127.0.0.1:\(port)/hello"]).status != 0)
    }

    @Test func reloadServesNewConnectionsWithTheNewCertificate() throws {
        let pki = try TestPKI()
        try pki.issue("server-1")
        try pki.issue("server-2")
        let server = try startTLSServer(pki, "server-1")
        let url = "https://127.0.0.1:\(server.boundAddresses[0].port)/x"
        #expect(try curlTLS(url, ca: pki.caPath).subjects.first?.contains("CN = server-1") == true)

        try server.reloadTLS(try pki.credentials("server-2"), drainTimeout: .seconds(10))
        let after = try curlTLS(url, ca: pki.caPath)
        #expect(after.status == 0)
        #expect(after.subjects.first?.contains("CN = server-2") == true)
        // The old daemon had no connection left: it is stopped at the first sweep.
        #expect(server.stopDrainedDaemons() == 0)
        #expect(server.retiringDaemons == 0)
        #expect(try curlTLS(url, ca: pki.caPath).subjects.first?.contains("CN = server-2") == true)
    }

    @Test func oldDaemonFinishesItsKeepAliveConnectionThenStops() throws {
        let pki = try TestPKI()
        try pki.issue("server-1")
        try pki.issue("server-2")
        let server = try startTLSServer(pki, "server-1")
        let port = server.boundAddresses[0].port
        guard let openssl = toolPath("openssl") else { throw ToolError(description: "openssl not found") }

        // A TLS connection to the old daemon, kept open by s_client (-quiet ignores end of input).
        let scratch = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let client = try ChildProcess(
            openssl, ["s_client", "-quiet", "-connect", "127.0.0.1:\(port)", "-CAfile", pki.caPath],
            stdin: .pipe, stdout: .file(scratch + "/out"))
        defer { client.kill() }
        #expect(eventually { server.openConnections == 1 })

        try server.reloadTLS(try pki.credentials("server-2"), drainTimeout: .seconds(30))
        #expect(server.retiringDaemons == 1)
        #expect(server.stopDrainedDaemons() == 1)  // its connection is still open
        let fresh = try curlTLS("https://127.0.0.1:\(port)/new", ca: pki.caPath)
        #expect(fresh.subjects.first?.contains("CN = server-2") == true)

        // The old connection still works, and is told to close; then s_client sees the close and exits.
        #expect(client.write("GET /old HTTP/1.1\r\nHost: t\r\n\r\n"))
        #expect(eventually(within: 10) { !client.isRunning })
        let text = (try? String(contentsOfFile: scratch + "/out", encoding: .utf8)) ?? ""
        #expect(text.hasPrefix("HTTP/1.1 200"))
        #expect(text.lowercased().contains("connection: close"))
        #expect(text.hasSuffix("GET /old ?<none> 127.0.0.1"))
        #expect(eventually { server.stopDrainedDaemons() == 0 })
        #expect(server.retiringDaemons == 0)
    }

    @Test func drainTimeoutStopsTheOldDaemonWithItsConnection() throws {
        let pki = try TestPKI()
        try pki.issue("server-1")
        let server = try startTLSServer(pki, "server-1")
        let idle = try HTTPTestClient(host: "127.0.0.1", port: server.boundAddresses[0].port)
        #expect(eventually { server.openConnections == 1 })
        try server.reloadTLS(try pki.credentials("server-1"), drainTimeout: .zero)
        #expect(server.stopDrainedDaemons() == 0)
        #expect(idle.waitForClose())
    }

    @Test func rejectedCredentialsKeepTheOldCertificate() throws {
        let pki = try TestPKI()
        try pki.issue("server-1")
        try pki.issue("server-2")
        let server = try startTLSServer(pki, "server-1")
        var mismatched = try pki.credentials("server-2")
        mismatched.privateKeyPEM = try pki.credentials("server-1").privateKeyPEM
        #expect {
            try server.reloadTLS(mismatched, drainTimeout: .seconds(1))
        } throws: { ($0 as? HTTPServerError)?.code == .startFailed }
        #expect(server.retiringDaemons == 0)
        let answer = try curlTLS("https://127.0.0.1:\(server.boundAddresses[0].port)/x", ca: pki.caPath)
        #expect(answer.subjects.first?.contains("CN = server-1") == true)

        // At start the same mismatch is a start failure, and nothing stays listening.
        #expect {
            _ = try startServer { $0.tls = mismatched }
        } throws: { ($0 as? HTTPServerError)?.code == .startFailed }
        var empty = mismatched
        empty.certificateChainPEM = []
        #expect {
            _ = try startServer { $0.tls = empty }
        } throws: { ($0 as? HTTPServerError)?.code == .invalidConfiguration }
    }

    @Test func reloadNeedsATLSServer() throws {
        let pki = try TestPKI()
        try pki.issue("server-1")
        let server = try startServer()
        #expect(!server.usesTLS)
        #expect {
            try server.reloadTLS(try pki.credentials("server-1"), drainTimeout: .seconds(1))
        } throws: { ($0 as? HTTPServerError)?.code == .invalidConfiguration }
        #expect(
            try HTTPTestClient(host: "127.0.0.1", port: server.boundAddresses[0].port).request("GET", "/").status == 200
        )
    }
}

@Suite("ListenAddress.isLoopback and adopted descriptors")
struct LoopbackTests {
    @Test(arguments: [
        ("127.0.0.1:1", true), ("127.1.2.3:1", true), ("[::1]:1", true), ("[::ffff:127.0.0.1]:1", true),
        ("0.0.0.0:1", false), ("[::]:1", false), ("192.0.2.1:1", false), ("[2001:db8::1]:1", false),
        ("[::ffff:192.0.2.1]:1", false), ("128.0.0.1:1", false),
    ])
    func loopback(_ text: String, _ expected: Bool) throws {
        #expect(try ListenAddress(parsing: text).isLoopback == expected)
    }

    @Test func boundToReadsTheDescriptorsAddress() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        #expect(throws: HTTPServerError.self) { _ = try ListenAddress(boundTo: -1) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        _ = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        let bound = try ListenAddress(boundTo: fd)
        #expect(bound.host == "127.0.0.1" && bound.isLoopback && bound.port != 0)
        // Not listening: a server refuses to adopt it (and closes it, as it owns adopted descriptors).
        #expect {
            _ = try HTTPServer(configuration: HTTPServerConfiguration(listenDescriptors: [fd]), handler: echo)
        } throws: { ($0 as? HTTPServerError)?.code == .socketFailed }
    }
}
