#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A file opened read-only and read with `pread`: never written, never locked.
///
/// The descriptor is opened `O_RDONLY | O_CLOEXEC` (or adopted from a caller that opened it
/// safely, e.g. relative to a directory) and closed when the source is released. No `flock`
/// or `fcntl` lock is taken, so a running QEMU does not notice the reader.
public final class FileImageSource: ImageSource {
    /// The open descriptor.
    public let fd: Int32
    /// Size from `fstat` at open time.
    public let size: UInt64
    /// `st_blocks * 512` from `fstat` at open time.
    public let allocatedBytes: UInt64
    private let owns: Bool
    /// Where reads in progress are recorded (nil: not recorded).
    public let activity: ReadActivity?

    /// Opens `path` read-only.
    ///
    /// - Throws: ``QCOW2Error`` of kind `io` with the errno when `open` or `fstat` fails.
    public convenience init(path: String) throws(QCOW2Error) {
        let fd = unsafe open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            let e = errno
            throw QCOW2Error(.io, structure: "file", value: Self.errnoName(e), message: "cannot open: \(Self.describe(e))")
        }
        do {
            try self.init(fd: fd, ownsDescriptor: true)
        } catch {
            close(fd)
            throw error
        }
    }

    /// Adopts an already open descriptor; closes it on release when `ownsDescriptor` is true.
    ///
    /// - Throws: ``QCOW2Error`` of kind `io` when `fstat` fails or the descriptor is not a regular file.
    public init(fd: Int32, ownsDescriptor: Bool, activity: ReadActivity? = nil) throws(QCOW2Error) {
        var st = stat()
        guard unsafe fstat(fd, &st) == 0 else {
            let e = errno
            throw QCOW2Error(.io, structure: "file", value: Self.errnoName(e), message: "fstat: \(Self.describe(e))")
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw QCOW2Error(.io, structure: "file", message: "not a regular file")
        }
        self.fd = fd
        self.size = UInt64(clamping: st.st_size)
        self.allocatedBytes = UInt64(clamping: st.st_blocks) &* 512
        self.owns = ownsDescriptor
        self.activity = activity
    }

    deinit {
        if owns { close(fd) }
    }

    /// The file's size now (`fstat` on the descriptor), nil when fstat fails: a read that ended early
    /// while this still equals ``size`` is the storage's doing, not a truncation.
    public var currentSize: UInt64? {
        currentState?.size
    }

    /// The file's size and change time now (`fstat` on the descriptor), nil when fstat fails. A file
    /// truncated and written again to its old size has its old size but a new change time.
    public var currentState: (size: UInt64, ctimeSec: Int64, ctimeNsec: Int64)? {
        var st = stat()
        guard unsafe fstat(fd, &st) == 0 else { return nil }
        return (UInt64(clamping: st.st_size), Int64(st.st_ctim.tv_sec), Int64(st.st_ctim.tv_nsec))
    }

    /// Reads exactly `count` bytes with `pread`, retrying on EINTR and short reads.
    public func read(at offset: UInt64, count: Int) throws(QCOW2Error) -> [UInt8] {
        guard count >= 0, offset <= UInt64(Int64.max) else {
            throw QCOW2Error(.outOfRange, structure: "file", value: "\(count) bytes", offset: offset, message: "bad read")
        }
        if count == 0 { return [] }
        let token = activity?.begin(offset)
        defer { if let token { activity?.end(token) } }
        var buffer = [UInt8](repeating: 0, count: count)
        var done = 0
        var failure: Int32 = 0
        unsafe buffer.withUnsafeMutableBytes { raw in
            guard let base = raw.baseAddress else { return }
            while done < count {
                let n = unsafe pread(fd, base + done, count - done, off_t(offset) &+ off_t(done))
                if n > 0 {
                    done += n
                } else if n == 0 {
                    break
                } else if errno != EINTR {
                    failure = errno
                    break
                }
            }
        }
        if failure != 0 {
            let e = QCOW2Error(
                .io, structure: "file", value: Self.errnoName(failure), offset: offset &+ UInt64(done),
                message: "pread of \(count) bytes at offset \(offset &+ UInt64(done)): \(Self.errnoName(failure)) (\(Self.describe(failure)))")
            activity?.failed(e)
            throw e
        }
        guard done == count else {
            // Reads are bounded by the size fstat gave at open: a read that ends early is the storage's doing.
            let e = QCOW2Error(
                .truncated, structure: "file", value: "\(count) bytes", offset: offset,
                message: "only \(done) bytes could be read: the file ends (or shrank) before")
            activity?.failed(e)
            throw e
        }
        return buffer
    }

    /// The symbolic name of an errno value (`EIO`), or `errno N` for one not listed.
    public static func errnoName(_ code: Int32) -> String {
        let names: [Int32: String] = [
            EPERM: "EPERM", ENOENT: "ENOENT", EINTR: "EINTR", EIO: "EIO", ENXIO: "ENXIO", EBADF: "EBADF",
            EAGAIN: "EAGAIN", ENOMEM: "ENOMEM", EACCES: "EACCES", EFAULT: "EFAULT", EBUSY: "EBUSY",
            ENODEV: "ENODEV", EISDIR: "EISDIR", EINVAL: "EINVAL", ENFILE: "ENFILE", EMFILE: "EMFILE",
            EFBIG: "EFBIG", ENOSPC: "ENOSPC", ESPIPE: "ESPIPE", EROFS: "EROFS", ENAMETOOLONG: "ENAMETOOLONG",
            ENOSYS: "ENOSYS", ELOOP: "ELOOP", EOVERFLOW: "EOVERFLOW", ENOTCONN: "ENOTCONN", ETIMEDOUT: "ETIMEDOUT",
            ECONNREFUSED: "ECONNREFUSED", EHOSTDOWN: "EHOSTDOWN", ESTALE: "ESTALE", EREMOTEIO: "EREMOTEIO",
            ENOTDIR: "ENOTDIR", EXDEV: "EXDEV", ENOLINK: "ENOLINK", ECOMM: "ECOMM", EPROTO: "EPROTO",
        ]
        return names[code] ?? "errno \(code)"
    }

    static func describe(_ code: Int32) -> String {
        guard let p = unsafe strerror(code) else { return "errno \(code)" }
        return unsafe String(cString: p)
    }
}
