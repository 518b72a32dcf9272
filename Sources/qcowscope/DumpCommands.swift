import ArgumentParser
import QemuCompat

/// `qcowscope dump-header FILE [-j]`: qcow2.py's `dump-header`.
struct DumpHeaderCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dump-header",
        abstract: "Dump image header and header extensions, exactly as QEMU's qcow2.py does.",
        discussion: """
            Text: the 18 header fields as `name value` lines (name padded to 25 columns), a blank line, \
            then each extension. With -j: the header as JSON (indent 4), a blank line, the extensions as \
            a JSON array. Read-only; see `qcowscope --help` for the deliberate differences from qcow2.py.

            Example: qcowscope dump-header vm1.qcow2 | diff - <(python3 qcow2.py vm1.qcow2 dump-header)
            """
    )

    @OptionGroup var options: DumpOptions

    func run() throws {
        try options.run(includeHeader: true)
    }
}

/// `qcowscope dump-header-exts FILE [-j]`: qcow2.py's `dump-header-exts`.
struct DumpHeaderExtsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dump-header-exts",
        abstract: "Dump image header extensions, exactly as QEMU's qcow2.py does.",
        discussion: """
            Text: each extension as qcow2.py prints it, bitmaps with their directory and tables. With -j: \
            the JSON array of extensions (`[]` when there are none). Read-only.

            Example: qcowscope dump-header-exts -j vm1.qcow2 | jq '.[] | select(.name == "Bitmaps")'
            """
    )

    @OptionGroup var options: DumpOptions

    func run() throws {
        try options.run(includeHeader: false)
    }
}

/// The arguments both dump commands take.
struct DumpOptions: ParsableArguments {
    @Argument(help: "The qcow2 image file.")
    var file: String

    @Flag(name: [.customShort("j"), .customLong("json")], help: "Dump in JSON format.")
    var json = false

    @Option(
        name: .customLong("io-timeout"),
        help: "Seconds the command may wait for the storage before it gives up with exit 1 (default 30).")
    var ioTimeout: Double = Watchdog.defaultSeconds

    /// Dumps the file as `dump-header` (`includeHeader`) or `dump-header-exts`.
    func run(includeHeader: Bool) throws {
        Watchdog.arm(seconds: ioTimeout, file: file)
        try QemuDumpRunner.run(file: file, includeHeader: includeHeader, json: json)
    }
}

/// Runs a qcow2.py-compatible dump and reports the first stop on stderr.
enum QemuDumpRunner {
    static func run(file: String, includeHeader: Bool, json: Bool) throws {
        let dump: Qcow2PyDump
        do {
            dump = try Qcow2PyDump(path: file)
        } catch {
            Terminal.error("\(file): \(error.description)")
            throw ExitCode(1)
        }
        var out = StandardOutput()
        let stop =
            json
            ? DumpRenderer(dump, style: .json).render(includeHeader: includeHeader) { out.write($0) }
            : DumpRenderer(dump, style: .text).render(includeHeader: includeHeader) { out.write($0) }
        out.flush()
        guard let stop else { return }
        let total = dump.stopCount
        var line = "\(file): \(stop.description)"
        if total > 1 { line += " (and \(total - 1) more problem\(total == 2 ? "" : "s"))" }
        Terminal.error(line)
        throw ExitCode(1)
    }
}
