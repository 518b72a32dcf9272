/// Buffers the small writes of a renderer into pieces of about 64 KiB for its sink.
struct DumpOutput {
    private let sink: (String) -> Void
    private var buffer = ""

    init(sink: @escaping (String) -> Void) {
        self.sink = sink
    }

    mutating func write(_ s: String) {
        buffer += s
        if buffer.utf8.count >= 1 << 16 { flush() }
    }

    /// One `'{:<25} {}'` line of qcow2.py's text.
    mutating func line(_ name: String, _ value: String) {
        write(PythonFormat.pad(name, 25) + " " + value + "\n")
    }

    mutating func newline() { write("\n") }

    /// Hands everything buffered to the sink.
    mutating func flush() {
        if !buffer.isEmpty {
            sink(buffer)
            buffer = ""
        }
    }
}
