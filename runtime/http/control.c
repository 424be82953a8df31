/*
 * control.c — how an operator reaches a running server: a control socket (the
 * `troupe reload` and `troupe status` commands talk to it), an admin HTTP endpoint
 * (off by default, loopback only), and --watch (reload when a .lua file in the app's
 * directory changes, debounced). They share one thread with its own uv loop, apart
 * from the workers: a reload waits for every worker to switch, which a worker
 * cannot do for itself.
 *
 * A reload is the HTTP app (tr_http_reload: a new generation) and the Lua actors
 * whose script changed on disk (tr_lua_upgrade_all).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http_int.h"
#include "control.h"

#define REQ_MAX 4096

static void *zalloc(size_t n)
{
    void *p = tr_malloc(n);
    if (p)
        memset(p, 0, n);
    return p;
}

typedef struct ctl {
    tr_runtime     *rt;
    uv_loop_t       loop;
    uv_thread_t     thread;
    uv_async_t      stop;
    uv_pipe_t       sock;          /* control socket */
    uv_tcp_t        admin;
    uv_fs_event_t   watch;
    uv_timer_t      debounce;
    int             has_sock, has_admin, has_watch;
    char           *sock_path;
} ctl;

typedef struct client {
    union { uv_pipe_t pipe; uv_tcp_t tcp; } h;
    ctl            *c;
    int             http;          /* admin endpoint: speaks HTTP */
    char            buf[REQ_MAX];
    size_t          len;
    uv_write_t      wreq;
    char           *out;
} client;

/* Runs a reload; fills out with a one-line JSON result. 0 or -1. */
static int do_reload(tr_runtime *rt, char *out, size_t n)
{
    char err[512];
    uint64_t gen = 0;
    int rc = 0;
    if (tr_runtime_ext(rt, TR_EXT_HTTP))
        rc = tr_http_reload(rt, err, sizeof err, &gen);
    int actors = tr_lua_upgrade_all(rt, NULL);
    if (rc < 0) {
        fprintf(stderr, "troupe: reload failed, generation %llu keeps serving: %s\n",
                (unsigned long long)gen, err);
        char esc[1024];
        size_t k = 0;
        for (const char *p = err; *p && k < sizeof esc - 8; p++) {
            unsigned char ch = (unsigned char)*p;
            if (ch == '"' || ch == '\\') {
                esc[k++] = '\\';
                esc[k++] = (char)ch;
            } else if (ch < 0x20) {
                k += (size_t)snprintf(esc + k, 8, "\\u%04x", ch);
            } else {
                esc[k++] = (char)ch;
            }
        }
        esc[k] = '\0';
        snprintf(out, n, "{\"ok\":false,\"generation\":%llu,\"error\":\"%s\"}\n",
                 (unsigned long long)gen, esc);
        return -1;
    }
    fprintf(stderr, "troupe: reloaded: generation %llu serving; %d actor(s) checked\n",
            (unsigned long long)gen, actors);
    snprintf(out, n, "{\"ok\":true,\"generation\":%llu,\"actors\":%d}\n",
             (unsigned long long)gen, actors);
    return 0;
}

int tr_control_reload(tr_runtime *rt, char *out, size_t n)
{
    return do_reload(rt, out, n);
}

static void on_client_closed(uv_handle_t *h)
{
    client *cl = h->data;
    tr_free(cl->out);
    tr_free(cl);
}

static void on_written(uv_write_t *w, int status)
{
    (void)status;
    client *cl = w->data;
    uv_close((uv_handle_t *)&cl->h, on_client_closed);
}

static void reply(client *cl, const char *body, int status)
{
    size_t n = strlen(body) + 256;
    cl->out = tr_malloc(n);
    if (cl->out == NULL) {
        uv_close((uv_handle_t *)&cl->h, on_client_closed);
        return;
    }
    if (cl->http)
        snprintf(cl->out, n, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                             "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                 status, tr__http_reason(status), strlen(body), body);
    else
        snprintf(cl->out, n, "%s", body);
    uv_buf_t b = uv_buf_init(cl->out, (unsigned)strlen(cl->out));
    cl->wreq.data = cl;
    if (uv_write(&cl->wreq, (uv_stream_t *)&cl->h, &b, 1, on_written) != 0)
        uv_close((uv_handle_t *)&cl->h, on_client_closed);
}

/* A whole request is in: "reload" / "status" (control socket), or
 * "POST /reload" / "GET /status" (admin endpoint). */
static void handle(client *cl)
{
    tr_runtime *rt = cl->c->rt;
    char out[2048];
    const char *q = cl->buf;
    int reload, status;
    if (cl->http) {
        reload = strncmp(q, "POST /reload ", 13) == 0;
        status = strncmp(q, "GET /status ", 12) == 0;
    } else {
        reload = strncmp(q, "reload", 6) == 0;
        status = strncmp(q, "status", 6) == 0;
    }
    if (reload) {
        int rc = do_reload(rt, out, sizeof out);
        reply(cl, out, rc == 0 ? 200 : 500);
    } else if (status) {
        int n = tr_http_status(rt, out, sizeof out - 2);
        if (n > 0 && (size_t)n < sizeof out - 2)
            strcat(out, "\n");
        reply(cl, out, 200);
    } else {
        reply(cl, "{\"ok\":false,\"error\":\"unknown command (reload, status)\"}\n", 404);
    }
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    (void)hint;
    client *cl = h->data;
    *b = uv_buf_init(cl->buf + cl->len, (unsigned)(sizeof cl->buf - 1 - cl->len));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    (void)b;
    client *cl = s->data;
    if (nread < 0 || (nread == 0 && cl->len == sizeof cl->buf - 1)) {
        uv_close((uv_handle_t *)s, on_client_closed);
        return;
    }
    cl->len += (size_t)nread;
    cl->buf[cl->len] = '\0';
    const char *end = cl->http ? strstr(cl->buf, "\r\n\r\n") : strchr(cl->buf, '\n');
    if (end == NULL) {
        if (cl->len == sizeof cl->buf - 1)
            uv_close((uv_handle_t *)s, on_client_closed);
        return;
    }
    uv_read_stop(s);
    handle(cl);
}

static void on_connection(uv_stream_t *server, int status)
{
    ctl *c = server->data;
    if (status < 0)
        return;
    client *cl = zalloc(sizeof *cl);
    if (cl == NULL)
        return;
    cl->c = c;
    cl->http = server == (uv_stream_t *)&c->admin;
    if (cl->http)
        uv_tcp_init(&c->loop, &cl->h.tcp);
    else
        uv_pipe_init(&c->loop, &cl->h.pipe, 0);
    cl->h.tcp.data = cl;
    if (uv_accept(server, (uv_stream_t *)&cl->h) != 0 ||
        uv_read_start((uv_stream_t *)&cl->h, on_alloc, on_read) != 0)
        uv_close((uv_handle_t *)&cl->h, on_client_closed);
}

/* --watch: a burst of file events makes one reload, 100 ms after the last. */
static void on_debounced(uv_timer_t *t)
{
    ctl *c = t->data;
    char out[1024];
    do_reload(c->rt, out, sizeof out);
}

static void on_fs_event(uv_fs_event_t *h, const char *file, int events, int status)
{
    (void)events;
    ctl *c = h->data;
    if (status < 0)
        return;
    size_t n = file ? strlen(file) : 0;
    if (file && (n < 4 || strcmp(file + n - 4, ".lua") != 0))
        return;                     /* editors' swap and backup files */
    uv_timer_start(&c->debounce, on_debounced, 100, 0);
}

static void close_all(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void on_stop(uv_async_t *a)
{
    uv_walk(a->loop, close_all, NULL);
}

static void ctl_main(void *arg)
{
    ctl *c = arg;
    uv_run(&c->loop, UV_RUN_DEFAULT);
}

static ctl *the_ctl;

int tr_control_start(tr_runtime *rt, const tr_control_opts *o, char *err, size_t errlen)
{
    if (the_ctl) {
        snprintf(err, errlen, "the control thread already runs");
        return TR_EEXIST;
    }
    ctl *c = zalloc(sizeof *c);
    if (c == NULL || uv_loop_init(&c->loop) != 0) {
        tr_free(c);
        snprintf(err, errlen, "out of memory");
        return TR_ENOMEM;
    }
    c->rt = rt;
    int rc = 0;
    uv_async_init(&c->loop, &c->stop, on_stop);
    uv_timer_init(&c->loop, &c->debounce);
    c->debounce.data = c;
    if (o->control_path) {
        unlink(o->control_path);    /* a stale socket from a previous run */
        uv_pipe_init(&c->loop, &c->sock, 0);
        c->sock.data = c;
        c->has_sock = 1;
        if ((rc = uv_pipe_bind(&c->sock, o->control_path)) != 0 ||
            (rc = uv_listen((uv_stream_t *)&c->sock, 16, on_connection)) != 0) {
            snprintf(err, errlen, "control socket %s: %s", o->control_path, uv_strerror(rc));
            goto fail;
        }
        size_t n = strlen(o->control_path) + 1;
        if ((c->sock_path = tr_malloc(n)) != NULL)
            memcpy(c->sock_path, o->control_path, n);
    }
    if (o->admin_host) {
        struct sockaddr_storage ss;
        if (strcmp(o->admin_host, "127.0.0.1") != 0 && strcmp(o->admin_host, "::1") != 0 &&
            strcmp(o->admin_host, "localhost") != 0) {
            snprintf(err, errlen, "the admin endpoint listens on loopback only "
                                  "(127.0.0.1 or ::1), not %s", o->admin_host);
            rc = UV_EINVAL;
            goto fail;
        }
        if (strchr(o->admin_host, ':'))
            uv_ip6_addr(o->admin_host, o->admin_port, (struct sockaddr_in6 *)&ss);
        else
            uv_ip4_addr("127.0.0.1", o->admin_port, (struct sockaddr_in *)&ss);
        uv_tcp_init(&c->loop, &c->admin);
        c->admin.data = c;
        c->has_admin = 1;
        if ((rc = uv_tcp_bind(&c->admin, (struct sockaddr *)&ss, 0)) != 0 ||
            (rc = uv_listen((uv_stream_t *)&c->admin, 16, on_connection)) != 0) {
            snprintf(err, errlen, "admin endpoint: %s", uv_strerror(rc));
            goto fail;
        }
    }
    if (o->watch_dir) {
        uv_fs_event_init(&c->loop, &c->watch);
        c->watch.data = c;
        c->has_watch = 1;
        if ((rc = uv_fs_event_start(&c->watch, on_fs_event, o->watch_dir, 0)) != 0) {
            snprintf(err, errlen, "--watch %s: %s", o->watch_dir, uv_strerror(rc));
            goto fail;
        }
    }
    if (uv_thread_create(&c->thread, ctl_main, c) != 0) {
        snprintf(err, errlen, "cannot start the control thread");
        rc = UV_ENOMEM;
        goto fail;
    }
    the_ctl = c;
    return 0;
fail:
    uv_walk(&c->loop, close_all, NULL);
    uv_run(&c->loop, UV_RUN_DEFAULT);
    uv_loop_close(&c->loop);
    if (o->control_path && c->sock_path)
        unlink(o->control_path);
    tr_free(c->sock_path);
    tr_free(c);
    return TR_ESYS;
}

int tr_control_admin_port(void)
{
    if (the_ctl == NULL || !the_ctl->has_admin)
        return -1;
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getsockname(&the_ctl->admin, (struct sockaddr *)&ss, &len) != 0)
        return -1;
    return ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                          : ((struct sockaddr_in *)&ss)->sin_port);
}

void tr_control_stop(void)
{
    ctl *c = the_ctl;
    if (c == NULL)
        return;
    the_ctl = NULL;
    uv_async_send(&c->stop);
    uv_thread_join(&c->thread);
    uv_loop_close(&c->loop);
    if (c->sock_path)
        unlink(c->sock_path);
    tr_free(c->sock_path);
    tr_free(c);
}
