// posix_spawn calls that Swift's Glibc module does not import (they need _GNU_SOURCE), for the tests' ChildProcess.
#ifndef CSPAWNSHIM_H
#define CSPAWNSHIM_H

#include <spawn.h>

/// posix_spawn_file_actions_addchdir_np (glibc 2.29): the child changes to `path` before exec.
int cspawn_addchdir(posix_spawn_file_actions_t *actions, const char *path);

/// pipe2(fds, O_CLOEXEC): both ends close-on-exec from the start, so no child spawned by another thread keeps one.
int cspawn_pipe_cloexec(int fds[2]);

#endif
