/// A renderer of qcow2.py's dump output: text or `-j` JSON.
public protocol DumpRenderer: Sendable {
    /// Renders `dump-header` (`includeHeader`) or `dump-header-exts`, handing the output to `sink` in pieces.
    ///
    /// - Returns: the stop to report, `nil` when the output is exactly what qcow2.py prints.
    @discardableResult
    func render(includeHeader: Bool, into sink: (String) -> Void) -> DumpStop?
}

extension DumpRenderer {
    /// The whole output as one string, and the stop to report.
    public func render(includeHeader: Bool) -> (text: String, stop: DumpStop?) {
        var s = ""
        let stop = render(includeHeader: includeHeader) { s += $0 }
        return (s, stop)
    }
}
