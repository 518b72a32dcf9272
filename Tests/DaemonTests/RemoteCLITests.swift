import Foundation
import Glibc
import QCOW2TestSupport
import Testing

/// `qcowscope --server`: every view command against a real qcowscoped prints what the local run on the
/// same image prints (text and JSON, stdout and exit status), over TCP, TLS with a client certificate and
/// a token, and the Unix socket; `qcowscope images` lists a server's images; errors name the server.
@Suite(.enabled(if: QemuImageFactory.toolsAvailable, "needs qemu-img and qemu-io"), .serialized)
struct RemoteCLITests {
    /// Real images: a base and an overlay with two bitmaps (one name with a space, a slash and é) and
    /// written data, a v2 image with a snapshot, a 9 GiB image with 512-byte clusters (its L1 table and its
    /// bitmap's table take several pages), an image whose backing file is missing, and one that is not qcow2.
    static func makeImages(_ f: QemuImageFactory) throws {
        let base = try f.create("base.qcow2", size: 64 << 20)
        try f.write(base, offset: 0, length: 4 << 20)
        let top = try f.create("top.qcow2", size: 64 << 20, backing: "base.qcow2")
        try f.bitmapAdd(top, "b1")
        try f.write(top, offset: 8 << 20, length: 1 << 20)
        try f.bitmapAdd(top, "sp ace/é", granularity: 4096)
        try f.write(top, offset: 20 << 20, length: 64 << 10)
        let v2 = try f.create("old.qcow2", size: 16 << 20, options: ["compat=0.10"])
        try f.write(v2, offset: 0, length: 64 << 10)
        try f.snapshotCreate(v2, "snap1")
        let big = try f.create("big.qcow2", size: 9 << 30, options: ["cluster_size=512"])
        try f.bitmapAdd(big, "wide", granularity: 512)
        try f.write(big, offset: 8 << 30, length: 4096)
        _ = try f.create("orphan.qcow2", size: 1 << 20, backing: "gone.qcow2", extraArguments: ["-u"])
        _ = try f.writeFile("junk.qcow2", bytes: Array("not an image\n".utf8))
    }

    /// Every view command, with the arguments after the image (the bitmap names go through the URL).
    static let commands: [[String]] = [
        ["info"], ["header"], ["extensions"], ["bitmaps"], ["snapshots"], ["findings"], ["chain"], ["allocation"],
        ["map"], ["map", "--start", "0", "--length", "16777216", "--limit", "2"], ["l1"], ["l1", "--offset", "1", "--limit", "3"],
        ["l2", "0"], ["l2", "0", "--all"], ["table", "b1"], ["table", "sp ace/é", "--all"], ["table", "@index:1"],
        ["extents", "b1"], ["extents", "sp ace/é", "--all"], ["extents", "b1", "--start", "4096", "--length", "65536"],
        ["checkpoints"], ["checkpoints", "b1"], ["checkpoints", "b1", "--with", "sp ace/é"], ["checkpoints", "b1", "--extents"],
        ["extents", "nope"], ["l2", "999999"], ["table", "b1", "--offset", "99999999"],
    ]

    /// stdout and exit status of `qcowscope ARGS`; stderr kept for messages.
    static func run(_ f: QemuImageFactory, _ arguments: [String]) throws -> (out: String, status: Int32, err: String) {
        let r = try CLI.run(f, arguments)
        #expect(!r.signaled, "qcowscope \(arguments) was killed: \(r.stderr)")
        return (r.stdout, r.status, r.stderr)
    }

    /// Runs every command on every image locally and against `server`, and compares.
    static func compareAll(_ f: QemuImageFactory, server: [String], images: [String], commands: [[String]] = commands) throws {
        for image in images {
            for command in commands {
                // Bitmap names only where the image has them; the others are still asked once (404 both ways).
                if image != "top.qcow2" && command.count > 1 && ["table", "extents", "checkpoints"].contains(command[0])
                    && command[1] != "nope" && !command[1].hasPrefix("--")
                {
                    continue
                }
                for format in ["json", "text"] {
                    let args = [command[0], image] + command.dropFirst() + ["--format", format]
                    let local = try run(f, args)
                    let remote = try run(f, args + server)
                    #expect(remote.out == local.out, "qcowscope \(args.joined(separator: " ")): remote stdout differs")
                    #expect(remote.status == local.status, "qcowscope \(args): exit \(remote.status) remote, \(local.status) local; \(remote.err)")
                    if local.status != 0 && local.out.isEmpty {
                        // A failure: one line on stderr that names the server.
                        #expect(remote.err.hasPrefix("qcowscope: \(server[1]): \(image): "), "\(remote.err)")
                    }
                }
            }
        }
    }

    /// The check document without its two measured fields (how long it took, when it ran).
    static func withoutTimings(_ json: String) -> String {
        json.split(separator: "\n", omittingEmptySubsequences: false)
            .filter { !$0.contains("\"duration_ms\"") && !$0.contains("\"checked_at\"") }.joined(separator: "\n")
    }

    @Test func everyViewOverHTTPPrintsWhatTheLocalRunPrints() throws {
        let f = try QemuImageFactory()
        defer { f.removeDirectory() }
        try Self.makeImages(f)
        let daemon = try DaemonHarness(["--images", f.directory, "--scrub", "off"])
        let server = ["--server", "http://127.0.0.1:\(daemon.port)"]

        // The listing first, before any check changes an image's check state on the server.
        for format in ["json", "text"] {
            let local = try Self.run(f, ["images", f.directory, "--format", format])
            let remote = try Self.run(f, ["images", "--format", format] + server)
            #expect(remote.out == local.out && remote.status == local.status, "images --format \(format)\n\(remote.out)\n\(local.out)")
            #expect(local.status == 1, "junk.qcow2 is unreadable: exit 1")
            #expect(remote.out.contains("top.qcow2") && remote.out.contains("junk.qcow2"))
        }

        try Self.compareAll(f, server: server, images: ["top.qcow2"])
        // The other images (a v2 with a snapshot, 512-byte clusters, a missing backing file, not qcow2, no
        // such file): the views whose documents differ with them.
        let views: [[String]] = [["info"], ["header"], ["bitmaps"], ["snapshots"], ["findings"], ["chain"], ["map"], ["l1"], ["checkpoints"]]
        try Self.compareAll(
            f, server: server, images: ["old.qcow2", "big.qcow2", "orphan.qcow2", "junk.qcow2", "nothere.qcow2"], commands: views)
        // The multi-page documents really were several pages (joined from Link: rel="next" remotely).
        let l1 = try Self.run(f, ["l1", "big.qcow2", "--all", "--format", "json"] + server)
        #expect(l1.status == 0 && l1.out.contains("\"next\": null") && l1.out.components(separatedBy: "\"index\"").count > 4097, "\(l1.err)")
        let localL1 = try Self.run(f, ["l1", "big.qcow2", "--all", "--format", "json"])
        #expect(l1.out == localL1.out)

        // check: the same verdict, counts and problems (text exactly; JSON but for duration and time).
        for image in ["top.qcow2", "old.qcow2", "orphan.qcow2"] {
            let localText = try Self.run(f, ["check", image, "--format", "text"])
            let remoteText = try Self.run(f, ["check", image, "--format", "text"] + server)
            #expect(remoteText.out == localText.out && remoteText.status == localText.status, "check \(image): \(remoteText.err)")
            let localJSON = try Self.run(f, ["check", image, "--format", "json"])
            let remoteJSON = try Self.run(f, ["check", image, "--format", "json"] + server)
            #expect(Self.withoutTimings(remoteJSON.out) == Self.withoutTimings(localJSON.out), "check \(image) --format json")
            #expect(remoteJSON.status == localJSON.status)
        }

        // Errors name the server: nothing listening, a server URL that is not one, an option without --server.
        let refused = try Self.run(f, ["info", "top.qcow2", "--server", "http://127.0.0.1:1"])
        #expect(refused.status == 1 && refused.err.hasPrefix("qcowscope: http://127.0.0.1:1: ") && refused.out.isEmpty, "\(refused.err)")
        let bad = try Self.run(f, ["info", "top.qcow2", "--server", "ftp://127.0.0.1"])
        #expect(bad.status == 1 && bad.err.contains("--server ftp://127.0.0.1: expected"), "\(bad.err)")
        let lone = try Self.run(f, ["info", "top.qcow2", "--token-file", "/nonexistent"])
        #expect(lone.status == 2 && lone.err.contains("need --server"), "\(lone.err)")
        let both = try Self.run(f, ["images", f.directory] + server)
        #expect(both.status == 2)
        #expect(try daemon.terminate() == 0)
    }

    @Test func tlsWithAClientCertificateAndATokenAndTheUnixSocket() throws {
        let f = try QemuImageFactory()
        defer { f.removeDirectory() }
        try Self.makeImages(f)
        let pki = try OpsPKI()
        let cert = try pki.issue("qcowscope-server")
        let client = try pki.issue("backup-client", client: true)
        let token = f.path("token")
        try "s3cret-token-0123456789abcdef\n".write(toFile: token, atomically: false, encoding: .utf8)
        chmod(token, 0o600)
        let socket = f.path("qcowscope.sock")
        let daemon = try OpsDaemon([
            "--images", f.directory, "--scrub", "off", "--listen", "127.0.0.1:0", "--listen", "unix:\(socket)",
            "--tls-cert", cert.certificate, "--tls-key", cert.key, "--tls-client-ca", pki.ca, "--token-file", token,
        ])
        let url = "https://127.0.0.1:\(daemon.port)"
        let tls = ["--server", url, "--cacert", pki.ca, "--cert", client.certificate, "--key", client.key, "--token-file", token]
        let few: [[String]] = [["info"], ["bitmaps"], ["extents", "sp ace/é", "--all"], ["map"], ["checkpoints", "b1"], ["extents", "nope"]]
        try Self.compareAll(f, server: tls, images: ["top.qcow2"], commands: few)
        #expect(daemon.waitForLog("cert=CN=backup-client"))

        // Without the token: 401 from the server, one line naming it, exit 1.
        let noToken = try Self.run(f, ["info", "top.qcow2", "--server", url, "--cacert", pki.ca, "--cert", client.certificate, "--key", client.key])
        #expect(noToken.status == 1 && noToken.err.hasPrefix("qcowscope: \(url): top.qcow2: ") && noToken.out.isEmpty, "\(noToken.err)")
        // Without the CA: the certificate cannot be verified, and nothing is printed.
        let noCA = try Self.run(f, ["info", "top.qcow2", "--server", url, "--token-file", token])
        #expect(noCA.status == 1 && noCA.err.hasPrefix("qcowscope: \(url): ") && noCA.out.isEmpty, "\(noCA.err)")
        // A token file that is not one.
        let empty = f.path("empty-token")
        try "\n".write(toFile: empty, atomically: false, encoding: .utf8)
        let badToken = try Self.run(f, ["info", "top.qcow2", "--server", url, "--token-file", empty])
        #expect(badToken.status == 1 && badToken.err.contains("--token-file \(empty): the first line"), "\(badToken.err)")

        // The Unix socket of this daemon speaks TLS too (https+unix:); same bytes.
        #expect(daemon.waitForLog("listening on unix:\(socket)"))
        let overSocket = ["--server", "https+unix:\(socket)"] + tls.dropFirst(2)
        try Self.compareAll(f, server: overSocket, images: ["top.qcow2"], commands: few)
        let local = try Self.run(f, ["images", f.directory, "--format", "text"])
        let remote = try Self.run(f, ["images", "--format", "text"] + overSocket)
        #expect(remote.out == local.out, "\(remote.err)")
        daemon.signal(SIGTERM)
        #expect(try daemon.waitForExit() == 0)

        // A plain daemon's socket: unix:/PATH.
        let plainSocket = f.path("plain.sock")
        let plain = try OpsDaemon(["--images", f.directory, "--scrub", "off", "--listen", "127.0.0.1:0", "--listen", "unix:\(plainSocket)"])
        #expect(plain.waitForLog("listening on unix:\(plainSocket)"))
        try Self.compareAll(f, server: ["--server", "unix:\(plainSocket)"], images: ["top.qcow2"], commands: few)
        plain.signal(SIGTERM)
        #expect(try plain.waitForExit() == 0)
    }
}
