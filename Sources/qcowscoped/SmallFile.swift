import Glibc

/// Reads small files (the config file, PEM certificates, keys, tokens) whole, through `open`/`read`.
enum SmallFile {
    /// The whole content of the file at `path`, at most `limit` bytes.
    ///
    /// - Parameter what: how the file is named in errors, for example `TLS certificate`.
    /// - Throws: ``StartupError`` naming the file when it cannot be read or is larger than `limit`.
    static func read(_ path: String, what: String, limit: Int = 1 << 20) throws(StartupError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)
        guard fd >= 0 else {
            throw StartupError("cannot read \(what) '\(path)': \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16384)
        while true {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count >= 0 else {
                throw StartupError("cannot read \(what) '\(path)': \(String(cString: strerror(errno)))")
            }
            if count == 0 { return bytes }
            bytes += chunk[..<count]
            if bytes.count > limit { throw StartupError("\(what) '\(path)' is larger than \(limit) bytes") }
        }
    }

    /// Whether users other than the owner may read the file (group or other read bit).
    static func isReadableByOthers(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & (S_IRGRP | S_IROTH)) != 0
    }
}
