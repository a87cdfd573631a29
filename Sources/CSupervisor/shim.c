#define _GNU_SOURCE
#include "csupervisor.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <errno.h>
#include <sys/socket.h>
#include <sys/statfs.h>
#include <unistd.h>

extern char **environ;

int csup_set_child_subreaper(void) {
    return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
}

int csup_signalfd(const int *signals, int count) {
    sigset_t mask;
    sigemptyset(&mask);
    for (int i = 0; i < count; i++) {
        sigaddset(&mask, signals[i]);
    }
    return signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
}

int csup_read_signal(int fd) {
    struct signalfd_siginfo info;
    ssize_t n = read(fd, &info, sizeof info);
    if (n != (ssize_t)sizeof info) {
        return -1;
    }
    return (int)info.ssi_signo;
}

short csup_spawn_setsid_flag(void) {
    return POSIX_SPAWN_SETSID;
}

int csup_spawn_add_close_from(void *actions, int lowfd) {
    return posix_spawn_file_actions_addclosefrom_np((posix_spawn_file_actions_t *)actions, lowfd);
}

int csup_syncfs(int fd) {
    return syncfs(fd);
}

int csup_pipe_cloexec(int fds[2]) {
    return pipe2(fds, O_CLOEXEC);
}

int csup_accept_cloexec(int fd) {
    return accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
}

void csup_scrub_environment_variable(const char *name) {
    size_t length = strlen(name);
    for (char **entry = environ; entry != NULL && *entry != NULL; entry++) {
        if (strncmp(*entry, name, length) == 0 && (*entry)[length] == '=') {
            char *value = *entry + length + 1;
            memset(value, 'x', strlen(value));
        }
    }
    unsetenv(name);
}

int csup_epoll_create(void) {
    return epoll_create1(EPOLL_CLOEXEC);
}

int csup_epoll_add(int epoll_fd, int fd) {
    struct epoll_event event = {.events = EPOLLIN, .data.fd = fd};
    return epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &event);
}

int csup_epoll_remove(int epoll_fd, int fd) {
    return epoll_ctl(epoll_fd, EPOLL_CTL_DEL, fd, NULL);
}

int csup_epoll_wait(int epoll_fd, int *fds, int max_fds, int timeout_ms) {
    struct epoll_event events[32];
    if (max_fds > 32) {
        max_fds = 32;
    }
    int count = epoll_wait(epoll_fd, events, max_fds, timeout_ms);
    for (int i = 0; i < count; i++) {
        fds[i] = events[i].data.fd;
    }
    return count;
}

int csup_random_bytes(unsigned char *buffer, int length) {
    int filled = 0;
    while (filled < length) {
        ssize_t n = getrandom(buffer + filled, (size_t)(length - filled), 0);
        if (n < 0) {
            return -1;
        }
        filled += (int)n;
    }
    return 0;
}

int csup_statfs_errno(const char *path) {
    struct statfs info;
    return statfs(path, &info) == 0 ? 0 : errno;
}
