/// Prints qcow2.py's dump output, byte for byte: its text, or its `-j` JSON.
///
/// The text is ``DumpTextRenderer``'s, the JSON ``DumpJSONRenderer``'s; both print from one ``Qcow2PyDump``.
public struct DumpRenderer: Sendable {
    /// Which of qcow2.py's outputs.
    public enum Style: Sendable {
        /// `dump-header`, `dump-header-exts`.
        case text
        /// `dump-header -j`, `dump-header-exts -j`.
        case json
    }

    /// What to print.
    public let dump: Qcow2PyDump
    /// How.
    public let style: Style

    /// Creates a renderer of `dump` in `style`.
    public init(_ dump: Qcow2PyDump, style: Style) {
        self.dump = dump
        self.style = style
    }

    /// Renders `dump-header` (`includeHeader`) or `dump-header-exts`, handing the output to `sink` in pieces.
    ///
    /// - Returns: the stop to report, the first failure qcow2.py hits: a non-ASCII bitmap name (its
    ///   UnicodeDecodeError comes as the entry is read), else one met while reading or printing a table,
    ///   else ``Qcow2PyDump/stop``; `nil` when the output is exactly what qcow2.py prints.
    @discardableResult
    public func render(includeHeader: Bool, into sink: (String) -> Void) -> DumpStop? {
        withoutActuallyEscaping(sink) { sink in
            let out = DumpOutput(sink: sink)
            switch style {
            case .text: return DumpTextRenderer(dump: dump).render(includeHeader: includeHeader, out: out)
            case .json: return DumpJSONRenderer(dump: dump).render(includeHeader: includeHeader, out: out)
            }
        }
    }

    /// The whole output as one string, and the stop to report.
    public func render(includeHeader: Bool) -> (text: String, stop: DumpStop?) {
        var s = ""
        let stop = render(includeHeader: includeHeader) { s += $0 }
        return (s, stop)
    }
}
