public import QCOW2

/// An image's backing chain, resolved beneath the images directory: the image, then each backing file.
///
/// Made by ``ImageCatalog/chain(of:)`` per request (one `openat2` and `fstat` per layer, and a header
/// parse of each backing qcow2 file). The chain ends early, with an error finding, at a backing file
/// that is missing, outside the directory, not a regular qcow2 or raw file, already in the chain (a
/// loop), or deeper than ``depthLimit``: nothing outside the directory is ever opened.
public struct ImageChain: Sendable {
    /// Layers below the image followed at most (QEMU's own open recursion allows about as many).
    public static let depthLimit = 64

    /// One layer: a qcow2 image or a raw file.
    public struct Layer: Sendable {
        /// Its path relative to the images directory, as QEMU joins it (no normalisation).
        public var name: String
        /// `qcow2` or `raw`.
        public var format: String
        /// The file's bytes.
        public var source: any ImageSource
        /// The parsed image, for a qcow2 layer.
        public var image: QCOW2Image?
        /// The external data file (name relative to the directory, and its bytes) when the image has one.
        public var dataFile: (name: String, source: any ImageSource)?
        /// QEMU's lock state on the layer, nil when not probed or for the image itself.
        public var locks: LockState?
        /// The layer's own findings, counted by severity.
        public var findingCounts: [Finding.Severity: Int]
        /// The layer's header, extension and directory findings (``ImageValidator/findings(_:)``), for a qcow2 layer.
        public var eagerFindings: [Finding] = []
        /// Whether the backing file this layer names was found (nil: it names none, or it was not looked for).
        public var backingPresent: Bool?
        /// The layer's identity (device, inode, size, times).
        var stamp: UInt64
    }

    /// The layers, the image first.
    public var layers: [Layer]
    /// False when the chain ended early (see ``findings``).
    public var complete: Bool
    /// Why the chain ended early or a data file is missing: B1 to B6.
    public var findings: [Finding]

    /// Every layer's identity: changes when any layer or data file changes, appears or vanishes.
    public var version: UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for l in layers { h = (h ^ l.stamp) &* 0x100_0000_01b3 }
        for f in findings { for b in f.code.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 } }
        return h
    }

    /// ``version`` and the lock state of every backing layer: what the `/chain` document depends on.
    public var versionWithLocks: UInt64 {
        var h = version
        for l in layers.dropFirst() {
            for b in (l.locks?.etagComponent ?? "-").utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        }
        return h
    }

    /// The persistent bitmaps of these layers by name (for checkpoints).
    public var bitmaps: ChainBitmaps {
        ChainBitmaps(layers: layers.map { ChainBitmaps.Layer(image: $0.image, findings: $0.eagerFindings) })
    }

    /// Each layer's name, the image first.
    public var layerNames: [String] { layers.map(\.name) }

    /// The map over these layers; `preallocated` tells QEMU's metadata-preallocation heuristic per qcow2 layer.
    public func guestMap(preallocated: (Layer) -> Bool) -> GuestMap {
        GuestMap(
            layers: layers.map { l in
                if let image = l.image {
                    return MapLayer(qcow2: image, dataFile: l.dataFile?.source, metadataPreallocated: preallocated(l))
                }
                return MapLayer(raw: l.source)
            })
    }
}
