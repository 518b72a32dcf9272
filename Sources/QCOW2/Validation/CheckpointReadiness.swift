/// Whether an incremental backup since a checkpoint can be taken from the files: the bitmaps of its
/// name in every layer of the chain, judged by the K rules.
///
/// A checkpoint is a bitmap name (libvirt keeps one bitmap per checkpoint in every layer and merges
/// them for a backup). It is ready when no error-severity K finding is made: no layer's bitmap is in use
/// (K1) or otherwise untrustworthy (K2), none is missing above a layer that has it (K3), every one
/// covers the image's size (K4), something in the active layer records writes since (K6), no writer
/// holds the image (K8) and the whole chain was read (K9). K5 and K7 are information.
public struct CheckpointReadiness: Sendable {
    /// The bitmap of the name in one layer.
    public struct LayerState: Sendable {
        /// 0 for the image, n for its n-th backing file.
        public var depth: Int
        /// The directory entry, nil when the layer has no bitmap of that name.
        public var bitmap: BitmapDirectoryEntry?
        /// Whether its bits can be used: not in use, no error finding on it, autoclear bit 0 set.
        public var consistent: Bool
        /// Whether the layer has the bitmap.
        public var present: Bool { bitmap != nil }
    }

    /// One reason the verdict is what it is.
    public struct Reason: Sendable {
        /// The K rule.
        public var rule: Rule
        /// The layer it is about, nil for the chain as a whole.
        public var depth: Int?
        /// The bitmap name it is about.
        public var bitmap: ByteString
        /// What is wrong, naming the layer and the bitmap.
        public var message: String
    }

    /// The checkpoint's name.
    public let name: ByteString
    /// The names merged: `name`, then the `with` names.
    public let merged: [ByteString]
    /// The name's bitmap in every layer, the image first.
    public var layers: [LayerState]
    /// Every K finding, in layer order, chain-wide ones last.
    public var reasons: [Reason]
    /// Enabled bitmaps of the active layer a backup since `name` should merge too (K7), when `name`'s is disabled there.
    public var mergeWith: [ByteString]

    /// No error-severity reason.
    public var ready: Bool { !reasons.contains { $0.rule.severity == .error } }

    /// Judges the checkpoint `name` (merged with `with`) over `chain`.
    ///
    /// - Parameters:
    ///   - layerNames: each layer's file name, for messages.
    ///   - writerPresent: QEMU's write lock on the image (nil: not probed).
    ///   - complete: false when the chain ended early (a backing file missing or refused).
    public init(
        _ name: ByteString, with: [ByteString] = [], in chain: ChainBitmaps, layerNames: [String], writerPresent: Bool?,
        complete: Bool
    ) {
        self.name = name
        var merged = [name]
        for w in with where !merged.contains(w) { merged.append(w) }
        self.merged = merged
        var reasons: [Reason] = []
        var layers: [LayerState] = []
        let size = chain.size
        func layerName(_ d: Int) -> String { d < layerNames.count ? layerNames[d] : "layer \(d)" }
        for n in merged {
            let shown = "'\(n.escaped)'"
            var deepest: Int? = nil
            for d in chain.layers.indices where chain.bitmap(n, depth: d) != nil { deepest = d }
            var granularities: Set<UInt64> = []
            for d in chain.layers.indices {
                let where_ = "layer \(d) (\(layerName(d)))"
                guard let b = chain.bitmap(n, depth: d), let image = chain.layers[d].image else {
                    if let deepest, d < deepest {
                        reasons.append(
                            Reason(
                                rule: .k3, depth: d, bitmap: n,
                                message: "\(where_) has no bitmap \(shown) but layer \(deepest) (\(layerName(deepest))) has one: writes to \(layerName(d)) are recorded nowhere"))
                    }
                    if n == name { layers.append(LayerState(depth: d, bitmap: nil, consistent: false)) }
                    continue
                }
                var consistent = true
                if b.inUse {
                    consistent = false
                    let why = image.inconsistencyReason(b, writerPresent: d == 0 ? writerPresent : nil) ?? "in-use"
                    reasons.append(Reason(rule: .k1, depth: d, bitmap: n, message: "bitmap \(shown) in \(where_) is \(why)"))
                } else if let why = Self.untrusted(b, image: image, findings: chain.layers[d].findings) {
                    consistent = false
                    reasons.append(Reason(rule: .k2, depth: d, bitmap: n, message: "bitmap \(shown) in \(where_) cannot be used: \(why)"))
                }
                if let g = b.granularity { granularities.insert(g) }
                if image.header.size != size {
                    reasons.append(
                        Reason(
                            rule: .k4, depth: d, bitmap: n,
                            message: "bitmap \(shown) in \(where_) covers \(image.header.size) bytes, the image \(size): QEMU cannot merge bitmaps of different sizes"))
                }
                if n == name { layers.append(LayerState(depth: d, bitmap: b, consistent: consistent)) }
            }
            if granularities.count > 1 {
                let list = granularities.sorted().map(String.init).joined(separator: ", ")
                reasons.append(
                    Reason(
                        rule: .k5, depth: nil, bitmap: n,
                        message: "the layers' bitmaps \(shown) have granularities \(list) bytes: the union is at \(granularities.min() ?? 0) bytes, coarser bitmaps count whole granules"))
            }
        }
        // Something in the active layer must record the writes made since the checkpoint.
        var mergeWith: [ByteString] = []
        if chain.layers.first?.image != nil {
            let recording = merged.contains { n in chain.bitmap(n, depth: 0).map { $0.auto && !$0.inUse } ?? false }
            if !recording, let own = chain.bitmap(name, depth: 0) {
                let unique = chain.activeEnabled.filter { !merged.contains($0) }
                if own.auto {
                    // In use (K1 said so): nothing else to add.
                } else if unique.isEmpty {
                    reasons.append(
                        Reason(
                            rule: .k6, depth: 0, bitmap: name,
                            message: "bitmap '\(name.escaped)' is disabled in the active layer (\(layerName(0))) and no enabled bitmap there records writes: writes since it was disabled are recorded nowhere"))
                } else {
                    mergeWith = unique
                    let list = unique.map { "'\($0.escaped)'" }.joined(separator: ", ")
                    reasons.append(
                        Reason(
                            rule: .k7, depth: 0, bitmap: name,
                            message: "bitmap '\(name.escaped)' is disabled in the active layer; the enabled \(list) record the writes since: merge them (?with=\(unique.map(\.escaped).joined(separator: ",")))"))
                }
            }
        }
        if writerPresent == true {
            reasons.append(
                Reason(
                    rule: .k8, depth: 0, bitmap: name,
                    message: "a writer holds \(layerName(0)) (QEMU's write lock): its bitmaps live in memory and the file's bits lag behind"))
        }
        if !complete {
            let d = chain.layers.count
            reasons.append(
                Reason(
                    rule: .k9, depth: d, bitmap: name,
                    message: "the chain ends early below \(layerName(d - 1)): layer \(d) and deeper were not read (see the chain's findings)"))
        }
        self.layers = layers
        self.reasons = reasons
        self.mergeWith = mergeWith
    }

    /// Why a bitmap that is not in use still cannot be trusted, nil when it can: the layer's own
    /// reason (version 2, autoclear bit clear), or the first error finding on it or on the bitmaps
    /// extension, including its table's (T rules, and T6: a table past the end of the file lost its bits).
    static func untrusted(_ b: BitmapDirectoryEntry, image: QCOW2Image, findings: [Finding]) -> String? {
        if let why = image.inconsistencyReason(b) { return why }
        if b.granularity == nil || b.granularityBits > 62 { return "granularity_bits \(b.granularityBits) cannot be decoded" }
        let own = findings.first { f in
            f.severity == .error
                && (f.bitmapIndex == b.index || (f.bitmapIndex == nil && f.rule.structure == .bitmapsExtension))
        }
        if let f = own { return "\(f.code): \(f.message)" }
        // A table past the end of the file reads as clean, as QEMU reads it: its bits were lost (T6).
        if let f = ImageValidator.tableFindings(image, b).first(where: { $0.severity == .error || $0.rule == .t6 }) {
            return "\(f.code): \(f.message)"
        }
        return nil
    }
}
