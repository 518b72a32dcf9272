/// The three feature bitmasks of the header, and the names QEMU gives their bits.
public enum FeatureGroup: UInt8, Sendable, Hashable, CaseIterable {
    /// `incompatible_features` (type 0 in the feature name table).
    case incompatible = 0
    /// `compatible_features` (type 1).
    case compatible = 1
    /// `autoclear_features` (type 2).
    case autoclear = 2

    /// The group's header field name.
    public var fieldName: String {
        switch self {
        case .incompatible: "incompatible_features"
        case .compatible: "compatible_features"
        case .autoclear: "autoclear_features"
        }
    }

    /// Short group name (`incompatible`, `compatible`, `autoclear`).
    public var name: String {
        switch self {
        case .incompatible: "incompatible"
        case .compatible: "compatible"
        case .autoclear: "autoclear"
        }
    }

    /// Names of the bits the spec defines, as in QEMU's feature name table.
    public var knownNames: [Int: String] {
        switch self {
        case .incompatible:
            [0: "dirty bit", 1: "corrupt bit", 2: "external data file", 3: "compression type", 4: "extended L2 entries"]
        case .compatible: [0: "lazy refcounts"]
        case .autoclear: [0: "bitmaps", 1: "raw external data"]
        }
    }

    /// The mask of bits the spec defines.
    public var knownMask: UInt64 {
        knownNames.keys.reduce(0) { $0 | (UInt64(1) << UInt64($1)) }
    }

    /// Set bit numbers of `mask`, lowest first.
    public static func bits(of mask: UInt64) -> [Int] {
        (0..<64).filter { mask & (UInt64(1) << UInt64($0)) != 0 }
    }
}
