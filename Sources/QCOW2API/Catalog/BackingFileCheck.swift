public import QCOW2

/// Whether an overlay's backing file is in the images directory, and where it was looked for.
///
/// QEMU resolves a relative backing name against the overlay's directory; qcowscope does the same,
/// beneath the images directory only (`openat2(RESOLVE_BENEATH)`): an absolute name is followed when
/// it names a file inside the directory, never outside it. Made by ``ImageCatalog`` on every lookup
/// (one `openat2` and `fstat`, no read), so a backing file that appears or vanishes is seen at once.
public struct BackingFileCheck: Sendable, Hashable {
    /// What the look-up found.
    public enum State: Sendable, Hashable {
        /// A regular file is there.
        case present
        /// Nothing is there (`ENOENT`, `ENOTDIR`), or it is not a regular file.
        case missing
        /// Not looked for: the name leaves the directory or is not a file name (the reason).
        case notFollowed(String)
        /// The look-up failed otherwise (the errno text).
        case failed(String)
    }

    /// The backing name as the header stores it.
    public let stored: ByteString
    /// The path it was looked for at, for messages (the directory joined with the relative name).
    public let lookedFor: String?
    /// What was found.
    public let state: State
    /// A digest of the backing file's identity (device, inode, size, times) when present, else of the state.
    let stamp: UInt64

    init(stored: ByteString, lookedFor: String?, state: State, stamp: UInt64) {
        self.stored = stored
        self.lookedFor = lookedFor
        self.state = state
        self.stamp = stamp
    }

    /// `true` when present, `false` when missing, `nil` when it could not be told.
    public var present: Bool? {
        switch state {
        case .present: return true
        case .missing: return false
        case .notFollowed, .failed: return nil
        }
    }

    /// The finding this state gives, `nil` when the backing file is present.
    public func finding(offset: UInt64) -> Finding? {
        let name = stored.escaped
        switch state {
        case .present:
            return nil
        case .missing:
            return Finding(
                .b1, structure: "header", field: "backing_file", value: name, offset: offset,
                message: "backing file '\(name)' does not exist: looked for \(lookedFor ?? name)")
        case .notFollowed(let why):
            return Finding(
                .b2, structure: "header", field: "backing_file", value: name, offset: offset,
                message: "backing file '\(name)' is not looked for: \(why)")
        case .failed(let why):
            return Finding(
                .b2, structure: "header", field: "backing_file", value: name, offset: offset,
                message: "backing file '\(name)' could not be looked for at \(lookedFor ?? name): \(why)")
        }
    }
}
