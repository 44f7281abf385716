/*
 * The echo load generator in C, used when a C compiler is available.
 *
 * On loopback the sender of a TCP segment pays for most of the receiver's TCP
 * processing too, so a client's CPU per round trip is close to a server's: a load
 * generator written in Python costs more per round trip than the servers it should
 * drive, and would be the bottleneck. This one is the same loop as the Python
 * fallback (slipstream/bench/loadgen.py): `connections` sockets, one message of
 * `size` bytes in flight on each, level-triggered epoll.
 *
 * With MODE "http" (the bench's web rows) each connection is an HTTP/1.1 keep-alive
 * client instead: the message is a GET request, and a round trip ends when the whole
 * response (its head and a Content-Length body) has arrived; SIZE is ignored.
 *
 * usage: c_loadgen PORT CONNECTIONS SIZE WARMUP DURATION SERVER_PID [echo|http]
 * prints {"requests": N, "elapsed": S, "server_cpu": S, "client_cpu": S} or {"error": "..."}
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 1024

static int fds[MAX_CONNS];
static size_t expected[MAX_CONNS]; /* bytes of the echo still to read */
static size_t unsent[MAX_CONNS];   /* bytes of the message still to send */
static int waiting[MAX_CONNS];     /* registered for EPOLLOUT */

/* HTTP mode: what has arrived of connection i's current response. */
#define INBOX_SIZE 16384
static char *inbox[MAX_CONNS];
static size_t inbox_used[MAX_CONNS];

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int fail(const char *what) {
    printf("{\"error\": \"%s: %s\"}\n", what, strerror(errno));
    return 0;
}

/* CPU seconds of every thread of `pid`, from /proc/PID/task/TID/schedstat (nanoseconds). */
static double process_cpu(int pid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", pid);
    DIR *dir = opendir(path);
    if (!dir) return -1;
    double total = 0;
    struct dirent *entry;
    while ((entry = readdir(dir))) {
        if (entry->d_name[0] == '.') continue;
        char file[320];
        snprintf(file, sizeof file, "/proc/%d/task/%s/schedstat", pid, entry->d_name);
        FILE *f = fopen(file, "r");
        if (!f) continue;
        unsigned long long ns = 0;
        if (fscanf(f, "%llu", &ns) == 1) total += (double)ns / 1e9;
        fclose(f);
    }
    closedir(dir);
    return total;
}

static double own_cpu(void) {
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    return (double)usage.ru_utime.tv_sec + (double)usage.ru_utime.tv_usec / 1e6 +
           (double)usage.ru_stime.tv_sec + (double)usage.ru_stime.tv_usec / 1e6;
}

/* Send what is left of connection i's message; register for EPOLLOUT if the socket is full. */
static int send_rest(int ep, int i, const char *payload, size_t size) {
    ssize_t sent = send(fds[i], payload + (size - unsent[i]), unsent[i], MSG_NOSIGNAL);
    if (sent < 0) {
        if (errno != EAGAIN) return -1;
        sent = 0;
    }
    unsent[i] -= (size_t)sent;
    int want = unsent[i] != 0;
    if (want != waiting[i]) {
        struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_MOD, fds[i], &ev);
        waiting[i] = want;
    }
    return 0;
}

/* The byte count of the first complete HTTP response in connection i's inbox: 0 while it is
 * incomplete, -1 (with *error set) if it is not a 200 response with a Content-Length body. */
static long complete_response(int i, const char **error) {
    char *head = inbox[i];
    size_t used = inbox_used[i];
    char *end = memmem(head, used, "\r\n\r\n", 4);
    if (!end) {
        if (used == INBOX_SIZE) *error = "response head larger than 16 KiB";
        return used == INBOX_SIZE ? -1 : 0;
    }
    if (used < 12 || memcmp(head, "HTTP/1.1 200", 12) != 0) {
        *error = "not an HTTP/1.1 200 response";
        return -1;
    }
    size_t head_size = (size_t)(end - head) + 4;
    long body = -1;
    /* Header names are case-insensitive: look at the start of every line. */
    for (char *line = memchr(head, '\n', head_size); line && line < end;
         line = memchr(line + 1, '\n', head_size - (size_t)(line + 1 - head))) {
        if (strncasecmp(line + 1, "content-length:", 15) == 0) {
            body = strtol(line + 16, NULL, 10);
            break;
        }
    }
    if (body < 0 || head_size + (size_t)body > INBOX_SIZE) {
        *error = "response without a Content-Length the inbox can hold";
        return -1;
    }
    return used >= head_size + (size_t)body ? (long)(head_size + (size_t)body) : 0;
}

int main(int argc, char **argv) {
    if (argc != 7 && argc != 8) {
        fprintf(stderr, "usage: %s PORT CONNECTIONS SIZE WARMUP DURATION SERVER_PID [echo|http]\n",
                argv[0]);
        return 2;
    }
    int port = atoi(argv[1]), count = atoi(argv[2]), pid = atoi(argv[6]);
    int http = argc == 8 && strcmp(argv[7], "http") == 0;
    size_t size = (size_t)atol(argv[3]);
    double warmup = atof(argv[4]), duration = atof(argv[5]);
    if (count < 1 || count > MAX_CONNS) return 2;
    char request[128];
    char *payload = request;
    if (http) {
        /* What wrk sends: a GET with only the Host header. */
        size = (size_t)snprintf(request, sizeof request,
                                "GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", port);
    } else {
        payload = malloc(size);
        memset(payload, 'x', size);
    }
    static char buffer[65536];
    int ep = epoll_create1(0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int one = 1;
    for (int i = 0; i < count; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(fds[i], (struct sockaddr *)&addr, sizeof addr) < 0) return fail("connect");
        setsockopt(fds[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (fcntl(fds[i], F_SETFL, O_NONBLOCK) < 0) return fail("fcntl");
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev);
        expected[i] = size;
        unsent[i] = size;
        if (http && !(inbox[i] = malloc(INBOX_SIZE))) return fail("malloc");
    }
    for (int i = 0; i < count; i++)
        if (send_rest(ep, i, payload, size) < 0) return fail("send");

    double started = now(), window_start = started + warmup, window_end = window_start + duration;
    double last_progress = started;
    long requests = 0, first_requests = 0;
    double first_time = 0, first_server = 0, first_own = 0;
    int measuring = 0;
    struct epoll_event events[MAX_CONNS];
    for (;;) {
        double t = now();
        if (!measuring && t >= window_start) {
            first_requests = requests, first_time = t;
            first_server = process_cpu(pid), first_own = own_cpu();
            measuring = 1;
        } else if (t >= window_end) {
            break;
        }
        int n = epoll_wait(ep, events, MAX_CONNS, 500);
        if (n < 0 && errno != EINTR) return fail("epoll_wait");
        if (n <= 0) {
            if (now() - last_progress > 5.0) {
                printf("{\"error\": \"no reply from the server for 5 s\"}\n");
                return 0;
            }
            continue;
        }
        last_progress = t;
        for (int k = 0; k < n; k++) {
            int i = (int)events[k].data.u32;
            if (events[k].events & EPOLLIN) {
                char *into = http ? inbox[i] + inbox_used[i] : buffer;
                size_t room = http ? INBOX_SIZE - inbox_used[i] : sizeof buffer;
                ssize_t got = recv(fds[i], into, room, 0);
                if (got == 0) {
                    printf("{\"error\": \"the server closed a connection\"}\n");
                    return 0;
                }
                if (got < 0) {
                    if (errno == EAGAIN) continue;
                    return fail("recv");
                }
                if (http) {
                    inbox_used[i] += (size_t)got;
                    const char *error = NULL;
                    long done = complete_response(i, &error);
                    if (done < 0) {
                        printf("{\"error\": \"%s\"}\n", error);
                        return 0;
                    }
                    if (done == 0) continue;
                    /* One request in flight: nothing may follow the response it answers. */
                    if ((size_t)done != inbox_used[i]) {
                        printf("{\"error\": \"bytes after a complete response\"}\n");
                        return 0;
                    }
                    inbox_used[i] = 0;
                } else {
                    expected[i] -= (size_t)got;
                    if (expected[i]) continue;
                }
                requests++;
                expected[i] = size;
                unsent[i] = size;
                if (send_rest(ep, i, payload, size) < 0) return fail("send");
            } else if (events[k].events & EPOLLOUT) {
                if (send_rest(ep, i, payload, size) < 0) return fail("send");
            } else {
                printf("{\"error\": \"connection error\"}\n");
                return 0;
            }
        }
    }
    double end_time = now(), end_server = process_cpu(pid), end_own = own_cpu();
    printf("{\"requests\": %ld, \"elapsed\": %.6f, \"server_cpu\": %.6f, \"client_cpu\": %.6f}\n",
           requests - first_requests, end_time - first_time, end_server - first_server,
           end_own - first_own);
    return 0;
}
