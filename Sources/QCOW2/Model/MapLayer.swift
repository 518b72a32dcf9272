/// One layer of a backing chain as the map reads it: a qcow2 image (with its external data file) or a raw file.
public struct MapLayer: Sendable {
    /// What the layer is.
    public enum Content: Sendable {
        /// A qcow2 image, and the external data file that holds its clusters when it has one.
        case qcow2(QCOW2Image, dataFile: (any ImageSource)?)
        /// A raw file: every byte is its own guest byte.
        case raw(any ImageSource)
    }

    /// What the layer is.
    public let content: Content
    /// Whether QEMU's metadata-preallocation heuristic holds (qcow2 only; see
    /// ``QCOW2Image/looksMetadataPreallocated(maxRefcountBytes:)``): data clusters are then also
    /// asked of the host file, and clusters over its holes read as data and zero.
    public let metadataPreallocated: Bool

    /// A qcow2 layer.
    public init(qcow2 image: QCOW2Image, dataFile: (any ImageSource)? = nil, metadataPreallocated: Bool = false) {
        content = .qcow2(image, dataFile: dataFile)
        self.metadataPreallocated = metadataPreallocated
    }

    /// A raw layer.
    public init(raw source: any ImageSource) {
        content = .raw(source)
        metadataPreallocated = false
    }

    /// Guest bytes, as QEMU counts them in 512-byte sectors: a qcow2 image's virtual size rounded
    /// down to 512, a raw file's size rounded up to 512.
    public var length: UInt64 {
        switch content {
        case .qcow2(let image, _): return image.header.size & ~511
        case .raw(let source): return Self.roundUp512(source.size)
        }
    }

    /// `n` rounded up to a multiple of 512 (saturating below 2^64).
    static func roundUp512(_ n: UInt64) -> UInt64 {
        n > UInt64.max - 511 ? UInt64.max & ~511 : (n + 511) & ~511
    }
}
