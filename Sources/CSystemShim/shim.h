// Header-only shim for Linux calls that Swift cannot import directly (variadic syscall()).
#ifndef CSYSTEMSHIM_H
#define CSYSTEMSHIM_H

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/inotify.h>
#include <sys/vfs.h>
#include <sys/syscall.h>
#include <unistd.h>
#if !defined(F_OFD_GETLK) && defined(__linux__)
#define F_OFD_GETLK 36 /* <asm-generic/fcntl.h>; glibc only defines it with _GNU_SOURCE */
#endif
#if __has_include(<linux/openat2.h>)
#include <linux/openat2.h>
#define CSS_HAVE_OPENAT2_H 1
#endif

/// Opens `name` relative to `dirfd` read-only, never leaving the directory (openat2 RESOLVE_BENEATH,
/// RESOLVE_NO_MAGICLINKS). O_NONBLOCK keeps a FIFO from blocking the open; O_NOCTTY keeps a tty
/// from becoming ours. Returns -1 with errno ENOSYS when the kernel or headers lack openat2.
static inline int css_openat2_beneath(int dirfd, const char *name) {
#if defined(SYS_openat2) && defined(CSS_HAVE_OPENAT2_H)
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
    return (int)syscall(SYS_openat2, dirfd, name, &how, sizeof how);
#else
    (void)dirfd; (void)name;
    errno = ENOSYS;
    return -1;
#endif
}

/// Fallback when openat2 is missing: a single component, no symlink followed at all.
static inline int css_openat_nofollow(int dirfd, const char *name) {
    return openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | O_NOFOLLOW);
}

/// Opens a directory read-only for use as the images root.
static inline int css_open_directory(const char *path) {
    return open(path, O_RDONLY | O_CLOEXEC | O_DIRECTORY);
}

/// Tests whether another open file description holds a lock that conflicts with a write lock on
/// the `len` bytes at `start` (fcntl F_OFD_GETLK, which takes no lock and needs no write access).
/// Returns 0 with `*held` 0 when nothing conflicts; 1 with the conflicting lock's type (F_RDLCK or
/// F_WRLCK) in `*type` and its l_pid in `*pid` (-1 for an OFD lock, the owner for a classic POSIX
/// lock); -1 with errno on failure (EINVAL when the kernel lacks OFD locks).
static inline int css_ofd_test_write(int fd, int64_t start, int64_t len, int *held, int *type, int32_t *pid) {
#ifdef F_OFD_GETLK
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = (off_t)start;
    fl.l_len = (off_t)len;
    fl.l_pid = 0;
    if (fcntl(fd, F_OFD_GETLK, &fl) != 0) return -1;
    *held = fl.l_type != F_UNLCK;
    *type = fl.l_type;
    *pid = (int32_t)fl.l_pid;
    return 0;
#else
    (void)fd; (void)start; (void)len; (void)held; (void)type; (void)pid;
    errno = ENOSYS;
    return -1;
#endif
}

/// Lowers the calling thread's scheduling priority by `nice` steps (Linux: setpriority on the thread
/// id affects that thread only), so worker threads yield the CPU to the threads answering requests.
static inline int css_lower_thread_priority(int nice) {
#if defined(__linux__) && defined(SYS_gettid)
    return setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), nice);
#else
    (void)nice;
    return 0;
#endif
}

/// Puts the calling thread's I/O in the idle class (ioprio_set IOPRIO_WHO_PROCESS with who 0: this
/// thread), so its reads are served only when no other I/O waits. Returns 0, or -1 with errno.
static inline int css_ioprio_idle_thread(void) {
#if defined(__linux__) && defined(SYS_ioprio_set)
    return (int)syscall(SYS_ioprio_set, 1 /* IOPRIO_WHO_PROCESS */, 0, 3 << 13 /* IOPRIO_CLASS_IDLE */);
#else
    errno = ENOSYS;
    return -1;
#endif
}

/// The calling thread's I/O priority (ioprio_get for this thread): class in bits 13-15; -1 on error.
static inline int css_ioprio_get_thread(void) {
#if defined(__linux__) && defined(SYS_ioprio_get)
    return (int)syscall(SYS_ioprio_get, 1, 0);
#else
    errno = ENOSYS;
    return -1;
#endif
}

/// The number of CPUs this process may run on (its affinity mask, as taskset or a cgroup cpuset set
/// it), read with the raw sched_getaffinity system call; 0 when it cannot be read.
static inline int css_affinity_cpu_count(void) {
#if defined(__linux__) && defined(SYS_sched_getaffinity)
    unsigned long mask[16];
    memset(mask, 0, sizeof mask);
    long n = syscall(SYS_sched_getaffinity, 0, sizeof mask, mask);
    if (n <= 0) return 0;
    int count = 0;
    for (long i = 0; i < n / (long)sizeof mask[0] && i < 16; i++) count += __builtin_popcountl(mask[i]);
    return count;
#else
    return 0;
#endif
}

/// The filesystem type (statfs `f_type`) of the file open as `fd`, or -1 when it cannot be read.
static inline long css_filesystem_type(int fd) {
    struct statfs fs;
    if (fstatfs(fd, &fs) != 0) return -1;
    return (long)fs.f_type;
}

/// An inotify descriptor (non-blocking, close-on-exec) watching the directory open as `dirfd` for
/// changes to its entries, or -1 with errno set.
static inline int css_watch_directory(int dirfd) {
    int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd < 0) return -1;
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", dirfd);
    uint32_t mask = IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
        | IN_DELETE_SELF | IN_MOVE_SELF;
    if (inotify_add_watch(fd, path, mask) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/// Whether an inotify event mask says events were lost or the watched directory itself changed.
static inline int css_inotify_mask_is_global(uint32_t mask) {
    return (mask & (IN_Q_OVERFLOW | IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT)) != 0;
}

/// Whether `name` in the directory `dirfd` is itself the regular file `inode` with one link (not a
/// symlink to it, not a second name of it): then inotify on the directory sees every change to it.
static inline int css_is_sole_name(int dirfd, const char *name, uint64_t inode) {
    struct stat st;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) return 0;
    return S_ISREG(st.st_mode) && st.st_nlink == 1 && (uint64_t)st.st_ino == inode;
}

/// Caps glibc's malloc arenas at `count` (mallopt M_ARENA_MAX); 1 on success.
static inline int css_limit_malloc_arenas(int count) {
    return mallopt(M_ARENA_MAX, count);
}

#endif
