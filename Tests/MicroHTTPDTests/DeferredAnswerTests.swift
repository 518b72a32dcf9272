import Dispatch
import Foundation
import HTTPTestSupport
import HTTPTypes
import MicroHTTPD
import Synchronization
import Testing

/// Deferred answers: a request whose answer comes later holds no libmicrohttpd thread.
@Suite("HTTPServer, deferred answers (suspend/resume)")
struct DeferredAnswerTests {
    /// A one-thread server whose `/slow/N` answers come N ms later from another thread; others at once.
    static func server() throws -> HTTPServer {
        try HTTPServer(
            configuration: HTTPServerConfiguration(listenAddresses: [ListenAddress(parsing: "127.0.0.1:0")], threadPoolSize: 1)
        ) { request, _, responder in
            let path = request.path ?? ""
            guard path.hasPrefix("/slow/"), let ms = Int(path.dropFirst(6)) else {
                responder.respond(HTTPResponse(status: .ok), body: Array("now \(path)".utf8))
                return
            }
            DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(ms)) {
                responder.respond(HTTPResponse(status: .ok), body: Array("later \(path)".utf8))
            }
        }
    }

    @Test("while answers wait, the server's only thread serves other connections at once")
    func waitingHoldsNoThread() throws {
        let server = try Self.server()
        let port = server.boundAddresses[0].port
        let slowClients = try (0..<4).map { _ in try HTTPTestClient(host: "127.0.0.1", port: port) }
        for (i, c) in slowClients.enumerated() { try c.send("GET /slow/\(1500 + i) HTTP/1.1\r\nHost: t\r\n\r\n") }
        Thread.sleep(forTimeInterval: 0.2)
        #expect(server.waitingRequests == 4)
        let fast = try HTTPTestClient(host: "127.0.0.1", port: port)
        let start = ContinuousClock.now
        for i in 0..<20 {
            let r = try fast.request("GET", "/fast/\(i)")
            #expect(r.status == 200 && r.text == "now /fast/\(i)")
        }
        let took = ContinuousClock.now - start
        #expect(took < .milliseconds(500), "20 answers on the one thread took \(took) while 4 waited")
        for (i, c) in slowClients.enumerated() {
            let r = try c.readResponse()
            #expect(r.status == 200 && r.text == "later /slow/\(1500 + i)")
        }
        // The registry forgets a request just after resuming it: allow that moment.
        for _ in 0..<100 where server.waitingRequests > 0 { Thread.sleep(forTimeInterval: 0.01) }
        #expect(server.waitingRequests == 0)
        // The resumed connection is kept alive and serves its next request.
        #expect(try slowClients[0].request("GET", "/again").text == "now /again")
    }

    @Test("only the first answer counts; an answer given before the handler returns is sent at once")
    func firstAnswerWins() throws {
        let server = try HTTPServer(
            configuration: HTTPServerConfiguration(listenAddresses: [ListenAddress(parsing: "127.0.0.1:0")], threadPoolSize: 1)
        ) { _, _, responder in
            #expect(responder.respond(HTTPResponse(status: .accepted), body: Array("first".utf8)))
            #expect(!responder.respond(HTTPResponse(status: .internalServerError), body: Array("second".utf8)))
        }
        let client = try HTTPTestClient(host: "127.0.0.1", port: server.boundAddresses[0].port)
        let r = try client.request("GET", "/x")
        #expect(r.status == 202 && r.text == "first")
        #expect(server.waitingRequests == 0)
    }

    @Test("stopping the server answers the waiting requests 503 and returns (no suspended connection left)")
    func stopAnswersWaitingRequests() throws {
        let server = try Self.server()
        let client = try HTTPTestClient(host: "127.0.0.1", port: server.boundAddresses[0].port)
        try client.send("GET /slow/60000 HTTP/1.1\r\nHost: t\r\n\r\n")
        Thread.sleep(forTimeInterval: 0.2)
        #expect(server.waitingRequests == 1)
        let start = ContinuousClock.now
        server.stop()
        #expect(ContinuousClock.now - start < .seconds(2))
        let r = try client.readResponse()
        #expect(r.status == 503 && r.header("Connection")?.lowercased() == "close")
    }
}
