// Writes every CraftedImages case into a directory, one file per case named after it (no
// extension), for the fuzz seed corpus. Built by Tests/Fuzz/make-seeds.sh together with the
// QCOW2TestSupport sources it needs (ImageBuilder, CraftedImages).
import Glibc

/// Writes `text` to standard error.
func fail(_ text: String) -> Never {
    var line = text + "\n"
    line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
    exit(1)
}

@main
struct DumpCrafted {
    static func main() {
        guard CommandLine.arguments.count == 2 else {
            fail("usage: dump-crafted DIR")
        }
        let dir = CommandLine.arguments[1]
        for c in CraftedImages.all {
            let path = dir + "/crafted-" + c.name
            let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            guard fd >= 0 else {
                fail("cannot create \(path)")
            }
            let written = c.bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            close(fd)
            guard written == c.bytes.count else {
                fail("short write to \(path)")
            }
        }
        print("\(CraftedImages.all.count) crafted images written to \(dir)")
    }
}
