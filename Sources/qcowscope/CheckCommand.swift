#if canImport(Glibc)
    import Glibc
#endif
import ArgumentParser
import QCOW2
import QCOW2API
import QemuCompat

/// `qcowscope check FILE` (`GET /v1/images/{image}/check`): the read-only refcount check.
struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Check refcounts and cluster tables read-only, as qemu-img check counts them (GET /v1/images/{image}/check).",
        discussion: """
            Text is qemu-img check's own output; JSON is the API's document, with every problem found. Nothing \
            is ever repaired or written, and no lock is taken. Exit status as qemu-img check: 0 clean, 1 internal \
            errors or a check that could not finish, 2 corruptions, 3 leaked clusters only.
            Example: qcowscope check vm1.qcow2 --format json
            """)

    @OptionGroup var options: ViewOptions

    @Option(help: "Counter memory the check may use, in MiB (2 bytes per host cluster; default 256; with --server the server's own bound applies).")
    var checkMemory: UInt64 = CheckOptions.defaultMemoryLimit >> 20

    func run() throws {
        var opts = CheckOptions()
        opts.memoryLimit = checkMemory << 20
        if isatty(2) == 1 { opts.progress = Self.progressBar }
        let doc = try options.show(
            { a in
                // Remote: the server's check, with the server's memory bound and no progress bar.
                guard let local = a as? ImageAccess else { return try a.document(.check).value }
                local.documents.catalog.checks.configure(launch: nil, options: opts)
                defer { if isatty(2) == 1 { Terminal.writeAll(2, Array("\r\u{1b}[K".utf8)) } }
                return try a.document(.check).value
            }, text: Self.text)
        let status: Int32
        func n(_ k: String) -> UInt64 { if case .uint(let v)? = doc[k] { return v } else { return 0 } }
        if n("check_errors") > 0 || doc["complete"] == .bool(false) {
            status = 1
        } else if n("corruptions") > 0 {
            status = 2
        } else if n("leaks") > 0 {
            status = 3
        } else {
            status = 0
        }
        if status != 0 { throw ExitCode(status) }
    }

    /// qemu-img check's human text for the document's figures, then why the check stopped, if it did.
    static func text(_ doc: JSONValue) -> String {
        func n(_ k: String) -> UInt64 { if case .uint(let v)? = doc[k] { return v } else { return 0 } }
        var out = QemuImgCheckText.render(
            corruptions: n("corruptions"), leaks: n("leaks"), checkErrors: n("check_errors"), totalClusters: n("total_clusters"),
            allocatedClusters: n("allocated_clusters"), fragmentedClusters: n("fragmented_clusters"),
            compressedClusters: n("compressed_clusters"), imageEndOffset: n("image_end_offset"))
        if case .string(let why)? = doc["incomplete_reason"] { out += "qcowscope: the check did not finish: \(why)\n" }
        return out
    }

    /// A one-line progress bar on standard error.
    static let progressBar: @Sendable (UInt64, UInt64) -> Void = { done, total in
        guard total > 0 else { return }
        let percent = min(100, done * 100 / total)
        let bar = String(repeating: "#", count: Int(percent / 5)) + String(repeating: " ", count: 20 - Int(percent / 5))
        Terminal.writeAll(2, Array("\r[\(bar)] \(percent)%".utf8))
    }
}
