import ArgumentParser
import QCOW2API

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// `qcowscope`: read-only qcow2 inspection from the command line.
struct Qcowscope: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "qcowscope",
        abstract: "Inspect qcow2 images read-only: header, extensions, dirty bitmaps, snapshots, findings.",
        discussion: """
            Nothing is ever written: every image is opened O_RDONLY, read with pread and never locked, \
            so images in use by a running VM can be inspected.

            The views (info, header, extensions, bitmaps, table, extents, snapshots, findings) print with \
            --format json exactly the JSON document qcowscoped serves for the matching endpoint \
            (/v1/images/{image}, /header, /extensions, /bitmaps, /bitmaps/{b}/table, /bitmaps/{b}/extents, \
            /snapshots, /findings), pretty-printed; --format text prints the same document as aligned text. The \
            default is json when stdout is not a terminal and text on a terminal. findings exits 1 \
            when a finding of severity error exists.

            With --server URL (http://HOST:PORT, https://HOST:PORT or unix:/PATH; --token-file, --cacert, \
            --cert and --key to reach it), every view asks that qcowscoped instead, FILE being the image's \
            name in its directory, and prints the same bytes as the local run on the same image; `images` \
            lists a server's images (or a directory's). Error lines name the server.

            dump-header and dump-header-exts print byte for byte what QEMU's \
            tests/qemu-iotests/qcow2.py prints (text, or JSON with -j). Differences on purpose:
            - read-only: qcow2.py opens the image r+b even to dump it; qcowscope opens it O_RDONLY;
            - the write commands set-header, add-header-ext, add-header-ext-stdio, del-header-ext \
            and set-feature-bit are not offered;
            - the command comes first: `qcowscope dump-header FILE [-j]` for `qcow2.py FILE dump-header [-j]`;
            - usage errors exit 2 (qcow2.py prints its usage and exits 0; it exits 0 on an unknown \
            command too);
            - where qcow2.py stops with a Python traceback (a bitmap name that is not ASCII, a bitmap \
            directory or table past the end of the file, a bogus extra_data_size, a seek past 2^63), \
            qcowscope prints what it can, then one error line on stderr naming the structure and the \
            file offset, and exits 1; a non-ASCII name is shown with \\xNN escapes and the dump goes on; \
            with -j only complete JSON documents are printed;
            - files without the qcow2 magic are refused (exit 1) instead of being dumped as garbage.

            Exit status: 0 success, 1 error (unreadable file, not qcow2, a dump that differs from \
            qcow2.py's, error findings), 2 usage error.
            """,
        version: ProductVersion.string,
        subcommands: [
            InfoCommand.self, HeaderCommand.self, ExtensionsCommand.self, BitmapsCommand.self, TableCommand.self, ExtentsCommand.self,
            SnapshotsCommand.self, FindingsCommand.self, L1Command.self, L2Command.self, MapCommand.self, ChainCommand.self, AllocationCommand.self, CheckCommand.self, CheckpointsCommand.self, ImagesCommand.self,
            DumpHeaderCommand.self,
            DumpHeaderExtsCommand.self,
        ]
    )

    /// Parses the arguments, runs the command and exits; usage errors exit 2 with ArgumentParser's message.
    static func runAndExit() -> Never {
        if CommandLine.arguments.count <= 1 {
            // No command at all is a usage error, as in qcow2.py (which exits 1 there).
            Terminal.writeAll(2, Array((helpMessage() + "\n").utf8))
            Glibc.exit(2)
        }
        do {
            var command = try parseAsRoot()
            try command.run()
            Glibc.exit(0)
        } catch {
            if exitCode(for: error) == .validationFailure {
                Terminal.writeAll(2, Array((fullMessage(for: error) + "\n").utf8))
                Glibc.exit(2)
            }
            Self.exit(withError: error)
        }
    }
}
