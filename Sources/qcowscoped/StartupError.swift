/// A reason the daemon cannot start, reported as one line on stderr before anything listens.
struct StartupError: Error, CustomStringConvertible {
    /// The line to print after `qcowscoped: error: `.
    let description: String

    /// Creates an error with its one-line message (newlines are replaced by spaces).
    init(_ message: String) {
        description = message.split(whereSeparator: \.isNewline).joined(separator: " ")
    }
}
