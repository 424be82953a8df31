/* bench/ceiling.c: the fastest server bench-http can measure on this machine.
 *
 * It does no HTTP work: per worker thread, an epoll loop over its own SO_REUSEPORT
 * listener reads whatever arrived, counts the requests in it (each ends at CRLF CRLF),
 * looks at one byte of each path (/json or anything else: /plaintext) and writes the
 * fixed TechEmpower answer for each, Server, Date, Content-Type and Content-Length
 * included. What it costs per request is the kernel's loopback TCP path and nothing
 * else, so its req/s under the same `wrk -t1` is the ceiling of the load generator
 * and the machine: no server, in C, Lua or JavaScript, can be measured above it here.
 * bench/http.sh runs it as the server "ceiling".
 *   ceiling PORT [THREADS]
 */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_FD   65536
#define IN_MAX   16384
#define OUT_MAX  65536

static const char JSON_BODY[] = "{\"message\":\"Hello, World!\"}";
static const char TEXT_BODY[] = "Hello, World!";

static int port;
static _Atomic(char *) date_line;           /* "Date: ...\r\n", swapped once a second */
static char date_bufs[2][64];

typedef struct conn {
    char   in[IN_MAX];
    size_t in_len;
    char   out[OUT_MAX];
    size_t out_len, out_off;
} conn;

static void *date_thread(void *arg)
{
    (void)arg;
    for (int i = 0;; i ^= 1) {
        time_t t = time(NULL);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(date_bufs[i], sizeof date_bufs[i], "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
        atomic_store(&date_line, date_bufs[i]);
        sleep(1);
    }
    return NULL;
}

static void answer(conn *c, int json)
{
    const char *body = json ? JSON_BODY : TEXT_BODY;
    size_t blen = json ? sizeof JSON_BODY - 1 : sizeof TEXT_BODY - 1;
    if (c->out_len + 256 + blen > OUT_MAX)
        return;                                 /* wrk never gets this far ahead */
    c->out_len += (size_t)snprintf(c->out + c->out_len, OUT_MAX - c->out_len,
                                   "HTTP/1.1 200 OK\r\nServer: ceiling\r\n%s"
                                   "Content-Type: %s\r\nContent-Length: %zu\r\n\r\n%s",
                                   atomic_load(&date_line),
                                   json ? "application/json" : "text/plain", blen, body);
}

/* Answers every whole request in c->in; keeps a partial one for the next read. */
static void scan(conn *c)
{
    size_t start = 0;
    for (size_t k = 3; k < c->in_len; k++) {
        if (c->in[k] == '\n' && c->in[k - 1] == '\r' && c->in[k - 2] == '\n' &&
            c->in[k - 3] == '\r') {
            const char *sp = memchr(c->in + start, ' ', k - start);
            answer(c, sp && sp[1] == '/' && sp[2] == 'j');
            start = k + 1;
        }
    }
    memmove(c->in, c->in + start, c->in_len - start);
    c->in_len -= start;
}

static int flush(int ep, int fd, conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = write(fd, c->out + c->out_off, c->out_len - c->out_off);
        if (n < 0) {
            struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.fd = fd };
            return epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev) == 0 ? 0 : -1;
        }
        c->out_off += (size_t)n;
    }
    c->out_len = c->out_off = 0;
    return 0;
}

static void *worker(void *arg)
{
    conn **conns = arg;
    int one = 1;
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    setsockopt(ls, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 1024)) {
        perror("ceiling: bind/listen");
        exit(1);
    }
    int ep = epoll_create1(0);
    struct epoll_event ev = { .events = EPOLLIN, .data.fd = ls }, evs[256];
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd, c;
            if (fd == ls) {
                while ((c = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    if (c >= MAX_FD || !(conns[c] = calloc(1, sizeof(conn)))) {
                        close(c);
                        continue;
                    }
                    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct epoll_event ce = { .events = EPOLLIN, .data.fd = c };
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &ce);
                }
                continue;
            }
            conn *cn = conns[fd];
            if (evs[i].events & EPOLLOUT) {
                if (flush(ep, fd, cn) < 0 || cn->out_len)
                    continue;
                struct epoll_event ce = { .events = EPOLLIN, .data.fd = fd };
                epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ce);
            }
            ssize_t r = read(fd, cn->in + cn->in_len, IN_MAX - cn->in_len);
            if (r <= 0 || (size_t)r == IN_MAX - cn->in_len) {
                if (r < 0 && evs[i].events & EPOLLOUT)
                    continue;
                close(fd);                      /* closed, or a request over 16 KB */
                free(cn);
                conns[fd] = NULL;
                continue;
            }
            cn->in_len += (size_t)r;
            scan(cn);
            if (flush(ep, fd, cn) < 0) {
                close(fd);
                free(cn);
                conns[fd] = NULL;
            }
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: ceiling PORT [THREADS]\n");
        return 2;
    }
    port = atoi(argv[1]);
    int threads = argc > 2 ? atoi(argv[2]) : 2;
    static conn *conns[MAX_FD];                 /* fds are process-wide: one table */
    pthread_t t;
    pthread_create(&t, NULL, date_thread, NULL);
    while (!atomic_load(&date_line))
        usleep(1000);
    for (int i = 0; i < threads; i++)
        pthread_create(&t, NULL, worker, conns);
    pthread_join(t, NULL);
    return 0;
}
