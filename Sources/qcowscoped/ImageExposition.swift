/// The per-image series of one scrape, written straight into the Prometheus text format (0.0.4).
///
/// These series are a snapshot made at scrape time (about 23 per image: 23,000 for 1,000 images), not
/// long-lived instruments, so they do not go through swift-prometheus' registry: a registry made fresh
/// each scrape cost O(series²) (it copies a family's label dictionary for every label set it adds; 934 ms
/// for 1,000 images), and one kept between scrapes still spent most of the scrape finding gauges and
/// unregistering stale ones. Here each sample is one line appended to its family's buffer; the families
/// are printed in the order they first appear, each with its `# HELP` and `# TYPE`. Nothing is kept, so
/// an image that goes, or a status that changes, leaves no stale series.
final class ImageExposition {
    /// A family's kind, its `# TYPE`.
    enum Kind: String {
        case gauge
        case counter
    }

    fileprivate struct Family {
        let name: String
        let help: String
        let kind: Kind
        var lines: [UInt8] = []
    }

    fileprivate var families: [Family] = []
    private var index: [String: Int] = [:]

    /// Where one sample goes: ``set(_:)-(Int64)`` appends its line (nothing for a sample that is not exported).
    struct Sample {
        fileprivate let exposition: ImageExposition?
        fileprivate let family: Int
        fileprivate let labels: [(String, String)]

        /// Appends the sample with an integer value: as an integer for a counter, as `1.0` for a gauge (the
        /// form swift-prometheus prints, and the daemon's series kept since round 1).
        func set(_ value: Int64) {
            guard let exposition else { return }
            exposition.append(family, labels, exposition.families[family].kind == .counter ? String(value) : String(Double(value)))
        }

        /// Appends the sample with a floating-point value (Go's `strconv` form that Prometheus reads).
        func set(_ value: Double) {
            exposition?.append(family, labels, value.isFinite ? String(value) : value.isNaN ? "NaN" : value > 0 ? "+Inf" : "-Inf")
        }
    }

    /// The sample of family `qcowscope_NAME` with `labels`; `exported` false gives one that writes nothing.
    func sample(_ name: String, _ help: String, _ labels: [(String, String)], kind: Kind = .gauge, exported: Bool = true) -> Sample {
        guard exported else { return Sample(exposition: nil, family: 0, labels: []) }
        let full = "qcowscope_" + name
        let i: Int
        if let known = index[full] {
            i = known
        } else {
            i = families.count
            families.append(Family(name: full, help: help, kind: kind))
            index[full] = i
        }
        return Sample(exposition: self, family: i, labels: labels)
    }

    fileprivate func append(_ family: Int, _ labels: [(String, String)], _ value: String) {
        // Bytes appended in place (a String built per line cost most of the scrape).
        families[family].lines.append(contentsOf: families[family].name.utf8)
        if !labels.isEmpty {
            families[family].lines.append(0x7b)
            for (n, (k, v)) in labels.enumerated() {
                if n > 0 { families[family].lines.append(0x2c) }
                families[family].lines.append(contentsOf: k.utf8)
                families[family].lines.append(contentsOf: [0x3d, 0x22])
                Self.escape(v, into: &families[family].lines)
                families[family].lines.append(0x22)
            }
            families[family].lines.append(0x7d)
        }
        families[family].lines.append(0x20)
        families[family].lines.append(contentsOf: value.utf8)
        families[family].lines.append(0x0a)
    }

    /// Appends a label value as the text format wants it: `\`, `"` and newline escaped.
    static func escape(_ value: String, into out: inout [UInt8]) {
        for b in value.utf8 {
            switch b {
            case 0x5c: out += [0x5c, 0x5c]
            case 0x22: out += [0x5c, 0x22]
            case 0x0a: out += [0x5c, 0x6e]
            default: out.append(b)
            }
        }
    }

    /// Every family with samples: `# HELP`, `# TYPE`, then its lines.
    func bytes() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(families.reduce(0) { $0 + $1.lines.count + 200 })
        for f in families where !f.lines.isEmpty {
            out += "# HELP \(f.name) \(f.help)\n# TYPE \(f.name) \(f.kind.rawValue)\n".utf8
            out += f.lines
        }
        return out
    }
}
