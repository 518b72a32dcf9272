#if canImport(Glibc)
    import Glibc
#endif
import CSystemShim

/// Who holds an image, read from QEMU's file locks without taking any.
///
/// QEMU's `file-posix` driver (block/file-posix.c, `raw_apply_lock_bytes`) takes shared (read)
/// OFD locks on single bytes of every image file it opens, one byte per block permission bit
/// `i` (`BLK_PERM_CONSISTENT_READ` 0x1, `WRITE` 0x2, `WRITE_UNCHANGED` 0x4, `RESIZE` 0x8):
///
/// * byte `100 + i` (`RAW_LOCK_PERM_BASE`): the holder *has* permission `i`;
/// * byte `200 + i` (`RAW_LOCK_SHARED_BASE`): the holder does *not share* permission `i`
///   (nobody else may take it).
///
/// `GRAPH_MOD` (0x10) is not a locked permission in current QEMU, so bytes 104 and 204 are not
/// probed. The probe asks the kernel with `fcntl(F_OFD_GETLK)` whether a *write* lock on each
/// byte would conflict with another open file description's lock: a read lock held by QEMU
/// does. `F_OFD_GETLK` takes no lock and needs no write access (our descriptor is `O_RDONLY`),
/// so QEMU cannot notice it. For OFD locks the kernel reports `l_pid = -1` (the owner is an
/// open file description, not a process); a classic POSIX lock (QEMU's fallback where OFD locks
/// are missing) reports the owner's pid.
public struct LockState: Sendable, Hashable {
    /// QEMU's locked permissions, by bit index: (API name, QEMU's name).
    public static let permissions: [(id: String, qemu: String)] = [
        ("consistent_read", "consistent read"), ("write", "write"), ("write_unchanged", "write unchanged"),
        ("resize", "resize"),
    ]
    /// `RAW_LOCK_PERM_BASE`.
    public static let permissionBase: Int64 = 100
    /// `RAW_LOCK_SHARED_BASE`.
    public static let notSharedBase: Int64 = 200

    /// Whether a byte says "holds the permission" or "does not share it".
    public enum Kind: String, Sendable, Hashable {
        /// Byte 100 + bit: a user holds the permission.
        case permission
        /// Byte 200 + bit: a user does not share the permission.
        case notShared = "not_shared"
    }

    /// One probed lock byte.
    public struct Byte: Sendable, Hashable {
        /// File offset of the byte.
        public var offset: Int64
        /// Permission byte or not-shared byte.
        public var kind: Kind
        /// The permission bit index (0 consistent read, 1 write, 2 write unchanged, 3 resize).
        public var bit: Int
        /// Whether another open file description holds a lock on the byte; nil when not probed.
        public var held: Bool?
        /// `read` or `write` (the conflicting lock's type) when held.
        public var lockType: String?
        /// The holder's pid for a classic POSIX lock; nil for an OFD lock (the kernel reports -1).
        public var ownerPID: Int32?

        /// The API name of the permission.
        public var permission: String { LockState.permissions[bit].id }

        /// A sentence saying what a lock on this byte means.
        public var meaning: String {
            let name = LockState.permissions[bit].qemu
            switch kind {
            case .permission:
                switch bit {
                case 0: return "a user holds the \"consistent read\" permission: it reads the image"
                case 1: return "a user holds the \"write\" permission: it changes the guest-visible contents (a writer)"
                default: return "a user holds the \"\(name)\" permission"
                }
            case .notShared:
                return "a user does not share the \"\(name)\" permission: no other user may take it"
            }
        }
    }

    /// The 8 bytes, permission bytes first, in bit order.
    public var bytes: [Byte]
    /// Why the probe failed (errno text), nil when it worked.
    public var error: String?

    private func held(_ kind: Kind, _ bit: Int) -> Bool? {
        bytes.first { $0.kind == kind && $0.bit == bit }?.held ?? nil
    }

    /// Byte 101: some process holds the write permission. Nil when the probe failed.
    public var writerPresent: Bool? { held(.permission, 1) }
    /// Byte 100: some process holds the consistent read permission (QEMU takes it to read).
    public var readersPresent: Bool? { held(.permission, 0) }
    /// Byte 201 free: another writer could still open the image. Nil when the probe failed.
    public var sharedWriteAllowed: Bool? { held(.notShared, 1).map { !$0 } }
    /// Any of the probed bytes is locked. Nil when the probe failed.
    public var locksHeld: Bool? { error != nil ? nil : bytes.contains { $0.held == true } }

    /// The permissions (API names) whose byte is held, for `kind`.
    public func names(_ kind: Kind) -> [String] {
        bytes.filter { $0.kind == kind && $0.held == true }.map(\.permission)
    }

    /// What the ETag of a view that shows the lock state must cover: every byte's state.
    public var etagComponent: String {
        if error != nil { return "locks:error" }
        return "locks:"
            + bytes.map { b in
                b.held == true ? "\(b.offset)\(b.lockType ?? "?")\(b.ownerPID.map { String($0) } ?? "")" : "-"
            }.joined(separator: ",")
    }

    /// Probes QEMU's lock bytes on `fd` (any descriptor of the image; `O_RDONLY` is enough).
    ///
    /// No lock taken, nothing cached: lock state changes without the file changing. One `fcntl` over
    /// bytes 100 to 203 first: when nothing holds any of them (no QEMU has the image open), every byte
    /// is free and that is the answer; otherwise one `fcntl` per byte, eight in all, says who holds which.
    public static func probe(fd: Int32) -> LockState {
        if noneHeld(fd: fd) { return free }
        var out: [Byte] = []
        for kind in [Kind.permission, .notShared] {
            for bit in 0..<permissions.count {
                let offset = (kind == .permission ? permissionBase : notSharedBase) + Int64(bit)
                var held: Int32 = 0
                var type: Int32 = 0
                var pid: Int32 = 0
                guard unsafe css_ofd_test_write(fd, offset, 1, &held, &type, &pid) == 0 else {
                    // One failure (no OFD locks: EINVAL; a file system without locks: ENOLCK)
                    // makes the whole answer unknown.
                    let e = errno
                    return LockState(bytes: unknown, error: unsafe "fcntl(F_OFD_GETLK) failed: \(String(cString: strerror(e)))")
                }
                let isHeld = held != 0
                out.append(
                    Byte(
                        offset: offset, kind: kind, bit: bit, held: isHeld,
                        lockType: isHeld ? (Int32(type) == Int32(F_WRLCK) ? "write" : "read") : nil,
                        ownerPID: isHeld && pid > 0 ? pid : nil))
            }
        }
        return LockState(bytes: out, error: nil)
    }

    /// The 8 bytes, none probed.
    /// Whether nothing holds any of QEMU's lock bytes on `fd` (one `fcntl` over bytes 100 to 203);
    /// false when something does or the probe failed.
    public static func noneHeld(fd: Int32) -> Bool {
        var anyHeld: Int32 = 0
        var anyType: Int32 = 0
        var anyPID: Int32 = 0
        let span = notSharedBase + Int64(permissions.count) - permissionBase
        return unsafe css_ofd_test_write(fd, permissionBase, span, &anyHeld, &anyType, &anyPID) == 0 && anyHeld == 0
    }

    /// Whether every lock byte was probed and is free (no QEMU has the image open).
    public var isFree: Bool { self == Self.free }

    /// Every lock byte probed and free.
    private static let free = LockState(
        bytes: [Kind.permission, .notShared].flatMap { kind in
            (0..<permissions.count).map { bit in
                Byte(
                    offset: (kind == .permission ? permissionBase : notSharedBase) + Int64(bit), kind: kind, bit: bit,
                    held: false, lockType: nil, ownerPID: nil)
            }
        }, error: nil)

    private static var unknown: [Byte] {
        [Kind.permission, .notShared].flatMap { kind in
            (0..<permissions.count).map { bit in
                Byte(
                    offset: (kind == .permission ? permissionBase : notSharedBase) + Int64(bit), kind: kind, bit: bit,
                    held: nil, lockType: nil, ownerPID: nil)
            }
        }
    }
}
