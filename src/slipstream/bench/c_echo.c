/*
 * The reference echo server for slipstream's benchmarks: the kernel's share.
 *
 * A single-threaded, level-triggered epoll loop, as lean as an echo server can be:
 * read up to 64 KiB, write it straight back, and only when the socket buffer cannot
 * take it all keep the rest and wait for EPOLLOUT. Its CPU time per round trip is
 * (nearly) all system calls and TCP, which is the floor any event loop stands on.
 *
 * Binds 127.0.0.1 on a free port, prints "ready PORT" and serves until killed.
 * Built by slipstream.bench.cref with `gcc -O2` into a temporary directory.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_SIZE 65536
#define MAX_FDS 65536

struct pending {
    char *data; /* bytes read but not yet written back */
    size_t size;
};

static struct pending pending[MAX_FDS];
static char buffer[READ_SIZE];

static void die(const char *what) {
    perror(what);
    exit(1);
}

static void drop(int ep, int fd) {
    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
    close(fd);
    free(pending[fd].data);
    pending[fd].data = NULL;
    pending[fd].size = 0;
}

/* Write what is pending for fd; returns 0 when all of it went out. */
static int flush_pending(int ep, int fd) {
    struct pending *p = &pending[fd];
    ssize_t sent = write(fd, p->data, p->size);
    if (sent < 0) {
        if (errno == EAGAIN) return 1;
        drop(ep, fd);
        return -1;
    }
    memmove(p->data, p->data + sent, p->size - (size_t)sent);
    p->size -= (size_t)sent;
    if (p->size) return 1;
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
    return 0;
}

static void on_readable(int ep, int fd) {
    ssize_t got = read(fd, buffer, sizeof buffer);
    if (got <= 0) {
        if (got < 0 && errno == EAGAIN) return;
        drop(ep, fd);
        return;
    }
    struct pending *p = &pending[fd];
    ssize_t sent = 0;
    if (p->size == 0) {
        sent = write(fd, buffer, (size_t)got);
        if (sent < 0) {
            if (errno != EAGAIN) {
                drop(ep, fd);
                return;
            }
            sent = 0;
        }
        if (sent == got) return;
    }
    /* Keep what the socket did not take and wait until it is writable. */
    p->data = realloc(p->data, p->size + (size_t)(got - sent));
    memcpy(p->data + p->size, buffer + sent, (size_t)(got - sent));
    p->size += (size_t)(got - sent);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.fd = fd};
    epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
}

int main(void) {
    /* A peer that closes while its echo is still being written makes write() raise
     * SIGPIPE, whose default action kills the process: the load generator closes its
     * connections at the end of a round, so at 100 KiB that happened mid-run. Ignored,
     * write() returns EPIPE and the connection is dropped like any other error. */
    signal(SIGPIPE, SIG_IGN);
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (listener < 0) die("socket");
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(listener, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind");
    if (listen(listener, 128) < 0) die("listen");
    socklen_t len = sizeof addr;
    getsockname(listener, (struct sockaddr *)&addr, &len);
    printf("ready %d\n", ntohs(addr.sin_port));
    fflush(stdout);

    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = listener};
    epoll_ctl(ep, EPOLL_CTL_ADD, listener, &ev);
    struct epoll_event events[256];
    for (;;) {
        int n = epoll_wait(ep, events, 256, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd == listener) {
                int conn;
                while ((conn = accept4(listener, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    if (conn >= MAX_FDS) {
                        close(conn);
                        continue;
                    }
                    setsockopt(conn, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct epoll_event cev = {.events = EPOLLIN, .data.fd = conn};
                    epoll_ctl(ep, EPOLL_CTL_ADD, conn, &cev);
                }
            } else if (events[i].events & EPOLLOUT) {
                flush_pending(ep, fd);
            } else if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                on_readable(ep, fd);
            }
        }
    }
}
