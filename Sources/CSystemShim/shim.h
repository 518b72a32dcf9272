// Header-only shim for Linux calls that Swift cannot import directly (variadic syscall()).
#ifndef CSYSTEMSHIM_H
#define CSYSTEMSHIM_H

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
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

#endif
