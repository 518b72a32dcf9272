import CSystemShim
import Glibc

/// The number of glibc malloc arenas of the process.
///
/// glibc gives each thread that allocates an arena of its own, up to 8 per core, and memory freed in
/// one stays there: a daemon with event loops, I/O workers, a scrubber and an access-log writer keeps
/// far more than it uses. In a 64 MiB cgroup with hostile images (Tests/Reliability/limits.py) two
/// arenas take qcowscoped's peak RSS from 77-82 MB to 71-75 MB.
public enum MallocArenas {
    /// Caps the arenas at `count` (`mallopt(M_ARENA_MAX)`), unless `MALLOC_ARENA_MAX` is set: then
    /// the environment decides, as glibc documents.
    public static func limit(to count: Int) {
        guard unsafe getenv("MALLOC_ARENA_MAX") == nil else { return }
        _ = css_limit_malloc_arenas(Int32(clamping: count))
    }
}
