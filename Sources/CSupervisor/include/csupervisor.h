#ifndef CSUPERVISOR_H
#define CSUPERVISOR_H

// Linux calls that Swift's Glibc module does not export. The header declares only plain C
// types, so it does not clash with Glibc's own view of the system headers. shim.c includes
// those headers with _GNU_SOURCE.

/// Makes the calling process a child subreaper, so orphans of its descendants are re-parented to it.
int csup_set_child_subreaper(void);

/// Creates a non-blocking, close-on-exec signalfd for the given signals.
int csup_signalfd(const int *signals, int count);

/// Reads one signalfd_siginfo and returns its signal number, or -1 when nothing is pending.
int csup_read_signal(int fd);

/// Returns POSIX_SPAWN_SETSID, a macro that Swift cannot import.
short csup_spawn_setsid_flag(void);

/// Adds "close every descriptor from LOWFD up" to a posix_spawn_file_actions_t (glibc 2.34
/// and later), so a child inherits only its standard streams. ACTIONS points to the actions.
int csup_spawn_add_close_from(void *actions, int lowfd);

/// Calls syncfs(2) on the filesystem that contains the open file descriptor.
int csup_syncfs(int fd);

/// pipe2(2) with O_CLOEXEC.
int csup_pipe_cloexec(int fds[2]);

/// accept4(2) with SOCK_CLOEXEC and SOCK_NONBLOCK, without the peer address.
int csup_accept_cloexec(int fd);

/// epoll_create1(2) with EPOLL_CLOEXEC.
int csup_epoll_create(void);

/// Adds FD to the epoll set for readability (EPOLLIN); returns 0 or -1 with errno.
int csup_epoll_add(int epoll_fd, int fd);

/// Removes FD from the epoll set.
int csup_epoll_remove(int epoll_fd, int fd);

/// Waits like epoll_wait(2) and stores the ready descriptors in FDS; returns their count or -1.
int csup_epoll_wait(int epoll_fd, int *fds, int max_fds, int timeout_ms);

/// Fills BUFFER with LENGTH random bytes from getrandom(2); returns 0 on success.
int csup_random_bytes(unsigned char *buffer, int length);

/// Calls statfs(2) on PATH and returns 0, or the errno when it fails.
int csup_statfs_errno(const char *path);

/// Overwrites the value of NAME in the process's environment strings, so that
/// /proc/self/environ no longer shows it, and removes NAME from the environment.
void csup_scrub_environment_variable(const char *name);

#endif
