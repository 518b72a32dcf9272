/// What `fstat` says about an image file: identity for caching and ETags, and sizes for summaries.
public struct FileInfo: Sendable, Hashable {
    /// The name inside the images directory.
    public var name: String
    /// Device number.
    public var device: UInt64
    /// Inode number.
    public var inode: UInt64
    /// Size in bytes.
    public var size: UInt64
    /// Bytes allocated on disk (`st_blocks * 512`), qemu-img's actual-size.
    public var allocatedBytes: UInt64
    /// Modification time, seconds.
    public var mtimeSec: Int64
    /// Modification time, nanoseconds.
    public var mtimeNsec: Int64
    /// Status change time, seconds.
    public var ctimeSec: Int64
    /// Status change time, nanoseconds.
    public var ctimeNsec: Int64
    /// A digest of what else the answers depend on (the backing file's presence and identity), 0 for none.
    ///
    /// Mixed into ``etag(view:)`` but not compared by ``sameVersion(as:)``, which is about this file.
    public var dependencies: UInt64 = 0

    /// The modification time as RFC 3339 UTC.
    public var mtimeRFC3339: String { Timestamp.rfc3339(seconds: mtimeSec, nanoseconds: mtimeNsec) }

    /// Whether two stats describe the same unchanged file (dev, inode, size, mtime, ctime).
    public func sameVersion(as other: FileInfo) -> Bool {
        device == other.device && inode == other.inode && size == other.size && mtimeSec == other.mtimeSec
            && mtimeNsec == other.mtimeNsec && ctimeSec == other.ctimeSec && ctimeNsec == other.ctimeNsec
    }

    /// A strong validator for `view` of this file version: 16 hex digits of FNV-1a over the identity.
    public func etag(view: String) -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ v: UInt64) {
            var x = v
            for _ in 0..<8 {
                h = (h ^ (x & 0xff)) &* 0x100_0000_01b3
                x >>= 8
            }
        }
        // No array and no radix conversion: this runs on every request a cached body answers.
        mix(device)
        mix(inode)
        mix(size)
        mix(UInt64(bitPattern: mtimeSec))
        mix(UInt64(bitPattern: mtimeNsec))
        mix(UInt64(bitPattern: ctimeSec))
        mix(UInt64(bitPattern: ctimeNsec))
        if dependencies != 0 { mix(dependencies) }
        for b in view.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        let digits: [UInt8] = Array("0123456789abcdef".utf8)
        var out = [UInt8](repeating: 0x22, count: 18)
        for i in 0..<16 { out[16 - i] = digits[Int((h >> (UInt64(i) * 4)) & 0xf)] }
        return String(decoding: out, as: UTF8.self)
    }
}
