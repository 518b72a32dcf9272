import HTTPTestSupport
import Foundation
import Glibc
import HTTPTypes
import MicroHTTPD
import Synchronization
import Testing

@Suite("HTTPServer, live over loopback")
struct HTTPServerTests {
    @Test func getOverIPv4() throws {
        let server = try startServer()
        let address = try #require(server.boundAddresses.first)
        #expect(address.family == .ipv4)
        #expect(address.port != 0)
        let client = try HTTPTestClient(host: "127.0.0.1", port: address.port)
        let response = try client.request("GET", "/hello")
        #expect(response.status == 200)
        #expect(response.text == "GET /hello ?<none> 127.0.0.1")
        #expect(response.header("content-type") == "text/plain")
        #expect(response.header("Content-Length") == "\(response.body.count)")
    }

    @Test func getOverIPv6AndIPv4FromOneServer() throws {
        let server = try startServer(["[::1]:0", "127.0.0.1:0"])
        #expect(server.boundAddresses.map(\.family) == [.ipv6, .ipv4])
        #expect(server.boundAddresses[0].description == "[::1]:\(server.boundAddresses[0].port)")
        let v6 = try HTTPTestClient(host: "::1", port: server.boundAddresses[0].port)
        #expect(try v6.request("GET", "/six").text == "GET /six ?<none> ::1")
        let v4 = try HTTPTestClient(host: "127.0.0.1", port: server.boundAddresses[1].port)
        #expect(try v4.request("GET", "/four").text == "GET /four ?<none> 127.0.0.1")
    }

    @Test func keepAliveReusesTheConnection() throws {
        let server = try startServer()
        let client = try HTTPTestClient(host: "127.0.0.1", port: server.boundAddresses[0].port)
        for index in 0..<5 {
            let response = try client.request("GET", "/n\(index)")
            #expect(response.status == 200)
            #expect(response.text.hasPrefix("GET /n\(index) "))
            #expect(response.header("Connection")?.lowercased() != "close")
        }
        #expect(server.openConnections == 1)
    }

    @Test func headHasNoBodyAndTheHeadersOfGet() throws {
        let server = try startServer()
        let client = try HTTPTestClient(host: "127.0.0.1", port: server.boundAddresses[0].port)
        let get = try client.request("GET", "/same")
        let head = try client.request("HEAD", "/same")
        #expect(head.status == 200)
        #expect(head.body.isEmpty)
        let getLength = try #require(get.header("Content-Length"))
        let headLength = try #require(head.header("Content-Length"))
        #expect(Int(getLength) == "GET /same ?<none> 127.0.0.1".utf8.count)
        #expect(Int(headLength) == "HEAD /same ?<none> 127.0.0.1".utf8.count)
        let names = { (r: HTTPTestResponse) in r.headers.map { $0.name.lowercased() }.sorted() }
        #expect(names(get) == names(head))
        // Had HEAD sent body bytes, this response would not parse.
        #expect(try client.request("GET", "/after").text.hasPrefix("GET /after "))
    }

    @Test func postIsAnsweredByTheHandlerAndItsBodyDiscarded() throws {
        let seen = Box<[String]>([])
        let server = try startServer(handler: { request, client in
            seen.value.withLock { $0.append("\(request.method) \(request.headerFields[.contentLength] ?? "-")") }
            return echo(request, client)
        })
        let client = try HTTPTestClient(host: "127.0.0.1", port: server.boundAddresses[0].port)
        let body = [UInt8](repeating: 0x41, count: 20_000)
        let response = try client.request("POST", "/upload", body: body)
        #expect(response.status == 405)
        #expect(response.header("Allow") == "GET, HEAD")
        #expect(try client.request("GET", "/next").status == 200)
        #expect(seen.value.withLock { $0 } == ["POST 20000", "GET -"])
    }

    @Test func oversizedUploadIsAnsweredEarlyAndTheConnectionClosed() throws {
        let server = try startServer { $0.uploadDiscardLimit = 4096 }
        let client = try HTTPTestClient(host: "127.0.0.1", port: server.boundAddresses[0].port)
        try client.send("PUT /big HTTP/1.1\r\nHost: t\r\nContent-Length: 100000000\r\n\r\n")
        let response = try client.readResponse()
        #expect(response.status == 405)
        #expect(client.waitForClose())
        let chunked = try HTTPTestClient(host: "127.0.0.1", port: server.boundAddresses[0].port)
        try chunked.send("POST /chunked HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        #expect(try chunked.readResponse().status == 405)
        #expect(chunked.waitForClose())
        // A body within the limit is discarded and the connection stays usable.
        let small = try HTTPTestClient(host: "127.0.0.1", port: server.boundAddresses[0].port)
        #expect(try small.request("PUT", "/small", body: [UInt8](repeating: 1, count: 4096)).status == 405)
        #expect(try small.request("GET", "/then").status == 200)
    }

    @Test func rawTargetArrivesUndecoded() throws {
        let seen = Box<(HTTPRequest, ClientInfo)?>(nil)
        let server = try startServer(handler: { request, client in
            seen.value.withLock { $0 = (request, client) }
            return echo(request, client)
        })
        let client = try HTTPTestClient(host: "127.0.0.1", port: server.boundAddresses[0].port)
        let response = try client.request("GET", "/a%2Fb%00c?x=%20&y=a+b&flag&&z=")
        #expect(response.text == "GET /a%2Fb%00c ?x=%20&y=a+b&flag&&z= 127.0.0.1")
        let (request, info) = try #require(seen.value.withLock { $0 })
        #expect(request.path == "/a%2Fb%00c?x=%20&y=a+b&flag&&z=")
        #expect(request.scheme == "http")
        #expect(info.version == "HTTP/1.1")
        #expect(info.remoteAddress == "127.0.0.1")
    }

    @Test func headersAreLookedUpCaseInsensitively() throws {
        let seen = Box<HTTPRequest?>(nil)
        let server = try startServer(handler: { request, client in
            seen.value.withLock { $0 = request }
            return echo(request, client)
        })
        let client = try HTTPTestClient(host: "127.0.0.1", port: server.boundAddresses[0].port)
        _ = try client.request("GET", "/h", headers: [("X-Probe-Thing", "one"), ("x-probe-thing", "two")])
        let request = try #require(seen.value.withLock { $0 })
        let probe = try #require(HTTPField.Name("x-PROBE-thing"))
        #expect(request.headerFields[values: probe].first == "one")
        #expect(request.headerFields[values: probe] == ["one", "two"])
        #expect(request.authority == client.hostField)
        #expect(request.headerFields[try #require(HTTPField.Name("X-Absent"))] == nil)
    }

    @Test func sixtyFourConcurrentClients() throws {
        let server = try startServer()
        let port = server.boundAddresses[0].port
        let results = Box<[Int: String]>([:])
        let connected = Box(0)
        for index in 0..<64 {
            onThread {
                do {
                    let client = try HTTPTestClient(host: "127.0.0.1", port: port)
                    connected.value.withLock { $0 += 1 }
                    // Hold every connection open until all 64 exist, then request at once.
                    _ = eventually(within: 10) { connected.value.withLock { $0 } == 64 }
                    let first = try client.request("GET", "/c\(index)")
                    let second = try client.request("GET", "/c\(index)/again")
                    results.value.withLock { $0[index] = "\(first.status) \(second.status) \(second.text)" }
                } catch {
                    results.value.withLock { $0[index] = "error: \(error)" }
                }
            }
        }
        #expect(eventually(within: 30) { results.value.withLock { $0.count } == 64 })
        let all = results.value.withLock { $0 }
        for index in 0..<64 {
            #expect(all[index] == "200 200 GET /c\(index)/again ?<none> 127.0.0.1")
        }
    }

    @Test func portInUseIsAClearError() throws {
        let first = try startServer()
        let taken = first.boundAddresses[0]
        let error = #expect(throws: HTTPServerError.self) {
            _ = try startServer(["127.0.0.1:0", taken.description])
        }
        #expect(error?.code == .addressInUse)
        #expect(error?.description == "cannot listen on \(taken): address already in use")
        // The first server still serves.
        let client = try HTTPTestClient(host: "127.0.0.1", port: taken.port)
        #expect(try client.request("GET", "/still").status == 200)
    }

    @Test func addressNotOnThisHostIsAClearError() {
        let error = #expect(throws: HTTPServerError.self) { _ = try startServer(["192.0.2.1:0"]) }
        #expect(error?.code == .addressUnavailable)
        #expect(error?.description == "cannot listen on 192.0.2.1:0: address not available on this host")
    }

    @Test func quiesceAndStopLetAnInFlightRequestFinish() throws {
        let server = try startServer()
        let port = server.boundAddresses[0].port
        let outcome = Box<String?>(nil)
        onThread {
            do {
                let client = try HTTPTestClient(host: "127.0.0.1", port: port)
                let response = try client.request("GET", "/slow")
                outcome.value.withLock {
                    $0 = "\(response.status) \(response.header("Connection") ?? "-") \(response.text)"
                }
            } catch {
                outcome.value.withLock { $0 = "error: \(error)" }
            }
        }
        #expect(eventually { server.inFlightRequests == 1 })
        server.quiesce()
        // New connections are refused while the slow request is still being served.
        #expect(throws: HTTPTestClientError.self) { _ = try HTTPTestClient(host: "127.0.0.1", port: port) }
        #expect(server.waitForInFlightRequests(timeout: .seconds(5)))
        server.stop()
        #expect(eventually { outcome.value.withLock { $0 } != nil })
        #expect(outcome.value.withLock { $0 } == "200 close GET /slow ?<none> 127.0.0.1")
        #expect(server.inFlightRequests == 0)
    }

    @Test func shutdownReturnsWhenIdleAndIsIdempotent() throws {
        let server = try startServer()
        #expect(server.shutdown(gracePeriod: .seconds(1)))
        server.stop()
        server.quiesce()
        #expect(server.openConnections == 0)
    }

    @Test func adoptsAnAlreadyListeningDescriptor() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        #expect(bound == 0)
        #expect(listen(fd, 16) == 0)
        let server = try HTTPServer(
            configuration: HTTPServerConfiguration(listenDescriptors: [fd], threadPoolSize: 1), handler: echo)
        let port = try #require(server.boundAddresses.first?.port)
        #expect(port != 0)
        let client = try HTTPTestClient(host: "127.0.0.1", port: port)
        #expect(try client.request("GET", "/adopted").status == 200)
    }

    @Test func connectionLimitHoldsNewConnectionsBack() throws {
        let server = try startServer {
            $0.threadPoolSize = 1; $0.connectionLimit = 1
        }
        let port = server.boundAddresses[0].port
        let first = try HTTPTestClient(host: "127.0.0.1", port: port)
        #expect(try first.request("GET", "/one").status == 200)
        // At the limit MHD stops accepting: the kernel completes the handshake but nobody serves it.
        let second = try HTTPTestClient(host: "127.0.0.1", port: port, timeoutSeconds: 1)
        try second.send("GET /two HTTP/1.1\r\nHost: t\r\n\r\n")
        #expect(throws: HTTPTestClientError.self) { _ = try second.readResponse() }
        first.close()
        // Once the first connection is gone, the waiting one is accepted and served.
        second.setTimeout(seconds: 10)
        #expect(try second.readResponse().text.hasPrefix("GET /two "))
    }

    @Test func perIPLimitClosesExtraConnectionsAndLogsIt() throws {
        let messages = Box<[String]>([])
        var configuration = HTTPServerConfiguration(
            listenAddresses: [try ListenAddress(parsing: "127.0.0.1:0")], threadPoolSize: 1, perIPConnectionLimit: 1)
        configuration.connectionTimeoutSeconds = 10
        let server = try HTTPServer(
            configuration: configuration, errorLog: { line in messages.value.withLock { $0.append(line) } },
            handler: echo)
        let port = server.boundAddresses[0].port
        let first = try HTTPTestClient(host: "127.0.0.1", port: port)
        #expect(try first.request("GET", "/one").status == 200)
        let second = try HTTPTestClient(host: "127.0.0.1", port: port)
        #expect(second.waitForClose())
        #expect(eventually { !messages.value.withLock { $0 }.isEmpty })
        #expect(try first.request("GET", "/still").status == 200)
    }

    @Test func perIPLimitHoldsAcrossEventLoops() throws {
        // Two event loops accept from one socket: the count per address is theirs together.
        let server = try startServer {
            $0.threadPoolSize = 2; $0.perIPConnectionLimit = 2
        }
        let port = server.boundAddresses[0].port
        let kept = try (0..<2).map { _ in try HTTPTestClient(host: "127.0.0.1", port: port) }
        for c in kept { #expect(try c.request("GET", "/kept").status == 200) }
        for _ in 0..<4 {
            let extra = try HTTPTestClient(host: "127.0.0.1", port: port)
            #expect(extra.waitForClose())
        }
        kept[0].close()
        // Its slot is free once the server saw it close.
        #expect(eventually { (try? HTTPTestClient(host: "127.0.0.1", port: port).request("GET", "/again").status) == 200 })
        #expect(try kept[1].request("GET", "/still").status == 200)
    }

    @Test func manyClientsWaitingAtOnceAreAllServed() throws {
        // libmicrohttpd 0.9.75's own epoll loop waits a whole timeout after exactly 128 events: with
        // 256 clients waiting at once it hung. The server's own event loops never do.
        let server = try startServer { $0.threadPoolSize = 1 }
        let port = server.boundAddresses[0].port
        for count in [128, 256, 512] {
            let clients = try (0..<count).map { _ in try HTTPTestClient(host: "127.0.0.1", port: port, timeoutSeconds: 5) }
            for round in 0..<3 {
                for c in clients { try c.send("GET /r\(round) HTTP/1.1\r\nHost: t\r\n\r\n") }
                for c in clients { #expect(try c.readResponse().text.hasPrefix("GET /r\(round) ")) }
            }
            clients.forEach { $0.close() }
        }
    }

    @Test func invalidStatusBecomes500() throws {
        let server = try startServer(handler: { _, _ in reply(42) })
        let client = try HTTPTestClient(host: "127.0.0.1", port: server.boundAddresses[0].port)
        #expect(try client.request("GET", "/x").status == 500)
    }
}

/// Load shedding: past the overload threshold, requests get 503 with Retry-After instead of queueing.
@Suite("Overload shedding")
struct OverloadTests {
    @Test func shedsWith503AndRetryAfter() throws {
        var configuration = HTTPServerConfiguration(
            listenAddresses: [try ListenAddress(parsing: "127.0.0.1:0")], threadPoolSize: 4)
        configuration.overloadThreshold = 1
        // The application hands the transport its 503 (the transport knows no problem types).
        let server = try HTTPServer(
            configuration: configuration,
            overloaded: { _, _ in reply(503, [.retryAfter: "1", .contentType: "application/problem+json"], "{}") }
        ) { _, _ in
            usleep(400_000)
            return reply(200, [.contentType: "text/plain"], "ok")
        }
        defer { server.stop() }
        let port = try #require(server.boundAddresses.first?.port)
        let statuses = Mutex<[Int]>([])
        let retryAfter = Mutex<[String]>([])
        // The first request is let in before the others arrive (with all four arriving at once on
        // two cores, every one can see the others' headers complete and be shed).
        DispatchQueue.concurrentPerform(iterations: 4) { index in
            if index > 0 { usleep(150_000) }
            guard let (status, headers) = try? rawGet(port: Int(port), path: "/slow") else { return }
            statuses.withLock { $0.append(status) }
            if status == 503 { retryAfter.withLock { $0.append(headers) } }
        }
        let got = statuses.withLock { $0 }
        #expect(got.count == 4)
        #expect(got.contains(200), "\(got)")
        #expect(got.contains(503), "\(got)")
        for h in retryAfter.withLock({ $0 }) {
            #expect(h.lowercased().contains("retry-after: 1") && h.contains("application/problem+json"))
        }
    }

    /// One GET over a fresh connection; returns the status and the raw header block.
    private func rawGet(port: Int, path: String) throws -> (Int, String) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EIO) }
        defer { close(fd) }
        var tv = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let ok = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard ok == 0 else { throw POSIXError(.ECONNREFUSED) }
        let req = Array("GET \(path) HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".utf8)
        _ = req.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
        var data: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            data += buf[0..<n]
        }
        let text = String(decoding: data, as: UTF8.self)
        let statusLine = text.split(separator: "\r\n").first ?? ""
        let status = Int(statusLine.split(separator: " ").dropFirst().first ?? "") ?? 0
        return (status, String(text.prefix { _ in true }.split(separator: "\r\n\r\n").first ?? ""))
    }
}
