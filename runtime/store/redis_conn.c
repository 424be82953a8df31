/*
 * redis_conn.c — a Redis connection that reconnects by itself, and the URL it goes to.
 *
 * A tr__rconn lives on one loop. It connects (AUTH and SELECT from the URL queued
 * first), is UP once they succeeded, and when it fails or drops goes DOWN: hiredis
 * fails every command in flight, on_down runs, and a retry timer reconnects after a
 * backoff (50 ms doubling to 2 s, with jitter). The same timer bounds a connect
 * attempt (the command timeout). While a connection is down after a failure,
 * `failed` tells tr_redis_submit to fail commands at once.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis_int.h"

#define BACKOFF_MIN_MS 50u
#define BACKOFF_MAX_MS 2000u

/* ---- hiredis on a uv loop ----
 * Like hiredis 0.14's adapters/libuv.h, with one difference that matters: when the
 * poll reports an error (libuv's UV_EBADF for EPOLLERR: a refused connect, a reset),
 * that adapter drops the event and the connection hangs; here hiredis gets a read and
 * a write event, finds the socket's error and fails the connection. libuv also stops
 * the handle then: one whose connection survives is started again. */

typedef struct rpoll {
    redisAsyncContext *ac;
    uv_poll_t          handle;
    int                events;
} rpoll;

static void rpoll_cb(uv_poll_t *h, int status, int events);

static void rpoll_set(rpoll *p, int events)
{
    p->events = events;
    if (events)
        uv_poll_start(&p->handle, events, rpoll_cb);
    else
        uv_poll_stop(&p->handle);
}

static void rpoll_cb(uv_poll_t *h, int status, int events)
{
    rpoll *p = h->data;
    int want = p->events;
    if (status < 0) {
        /* libuv stopped the handle: if the connection survives (its error was read
         * after data that was still in the socket), watch it again, or it hangs. */
        events = UV_READABLE | UV_WRITABLE;
        p->events = 0;
    }
    if (p->ac && (events & UV_READABLE))
        redisAsyncHandleRead(p->ac);
    if (p->ac && (events & UV_WRITABLE))   /* the read may have freed the context */
        redisAsyncHandleWrite(p->ac);
    if (status < 0 && p->ac && p->events == 0 && want)
        rpoll_set(p, want);
}

static void rpoll_add_read(void *d)  { rpoll *p = d; rpoll_set(p, p->events | UV_READABLE); }
static void rpoll_del_read(void *d)  { rpoll *p = d; rpoll_set(p, p->events & ~UV_READABLE); }
static void rpoll_add_write(void *d) { rpoll *p = d; rpoll_set(p, p->events | UV_WRITABLE); }
static void rpoll_del_write(void *d) { rpoll *p = d; rpoll_set(p, p->events & ~UV_WRITABLE); }

static void rpoll_closed(uv_handle_t *h)
{
    tr_free(h->data);
}

static void rpoll_cleanup(void *d)
{
    rpoll *p = d;
    p->ac = NULL;
    uv_close((uv_handle_t *)&p->handle, rpoll_closed);
}

static int rpoll_attach(redisAsyncContext *ac, uv_loop_t *loop)
{
    rpoll *p = tr_malloc(sizeof *p);
    if (p == NULL)
        return -1;
    memset(p, 0, sizeof *p);
    if (uv_poll_init(loop, &p->handle, ac->c.fd) != 0) {
        tr_free(p);
        return -1;
    }
    p->ac = ac;
    p->handle.data = p;
    ac->ev.data = p;
    ac->ev.addRead = rpoll_add_read;
    ac->ev.delRead = rpoll_del_read;
    ac->ev.addWrite = rpoll_add_write;
    ac->ev.delWrite = rpoll_del_write;
    ac->ev.cleanup = rpoll_cleanup;
    return 0;
}

/* ---- connections ---- */

void tr__rcfg_free(tr__rcfg *cfg)
{
    tr_free(cfg->host);
    tr_free(cfg->user);
    tr_free(cfg->pass);
    memset(cfg, 0, sizeof *cfg);
}

static char *dup_str(const char *s)
{
    if (s == NULL)
        return NULL;
    size_t n = strlen(s) + 1;
    char *d = tr_malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

static int cfg_copy(tr__rcfg *dst, const tr__rcfg *src)
{
    tr__rcfg c = { dup_str(src->host), dup_str(src->user), dup_str(src->pass),
                   src->port, src->db };
    if (c.host == NULL || (src->user && !c.user) || (src->pass && !c.pass)) {
        tr__rcfg_free(&c);
        return TR_ENOMEM;
    }
    tr__rcfg_free(dst);
    *dst = c;
    return 0;
}

static void conn_start(tr__rconn *c);
static void on_retry(uv_timer_t *t);

static void schedule_retry(tr__rconn *c)
{
    /* Jitter in [0.75, 1.25) of the backoff, so that the workers' connections do not
     * knock on a restarting server all at the same moment. */
    unsigned j = (unsigned)((uintptr_t)c >> 4) * 2654435761u + (unsigned)uv_now(c->loop);
    uint64_t ms = c->backoff_ms * 3 / 4 + (j >> 8) % (c->backoff_ms / 2 + 1);
    c->backoff_ms = c->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : c->backoff_ms * 2;
    uv_timer_start(&c->retry, on_retry, ms, 0);
}

static void conn_lost(tr__rconn *c)
{
    c->state = TR__RC_DOWN;
    c->failed = 1;
    tr__redis_fail_pending(c, c->why);
    if (c->on_down)
        c->on_down(c);
    schedule_retry(c);
}

/* Gives up the current connection (we decided: AUTH refused, connect timed out,
 * reconfigured). Its commands in flight fail with c->why. */
static void conn_drop(tr__rconn *c)
{
    redisAsyncContext *ac = c->ac;
    c->ac = NULL;
    conn_lost(c);
    if (ac)
        redisAsyncFree(ac);   /* deferred by hiredis when inside one of its callbacks */
}

static void conn_up(tr__rconn *c)
{
    c->state = TR__RC_UP;
    c->failed = 0;
    c->backoff_ms = BACKOFF_MIN_MS;
    uv_timer_stop(&c->retry);
    if (c->on_up)
        c->on_up(c);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    tr__rconn *c = ac->data;
    if (c == NULL || c->ac != ac)
        return;
    if (status != REDIS_OK) {
        /* hiredis frees ac when this returns */
        snprintf(c->why, sizeof c->why, "%s", ac->errstr[0] ? ac->errstr : "cannot connect");
        c->ac = NULL;
        conn_lost(c);
        return;
    }
    if (c->setup_left == 0)
        conn_up(c);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    tr__rconn *c = ac->data;
    (void)status;
    if (c == NULL || c->ac != ac)
        return;
    snprintf(c->why, sizeof c->why, "%s", ac->err && ac->errstr[0] ? ac->errstr
                                                                   : "connection closed");
    c->ac = NULL;
    conn_lost(c);
}

static void on_setup(redisAsyncContext *ac, void *reply, void *priv)
{
    tr__rconn *c = priv;
    const redisReply *rp = reply;
    if (rp == NULL || c->ac != ac)
        return;
    if (rp->type == REDIS_REPLY_ERROR) {
        /* AUTH, if any, was sent first */
        int first = (c->cfg.pass != NULL) + (c->cfg.db != 0) == c->setup_left;
        snprintf(c->why, sizeof c->why, "%s refused: %s",
                 c->cfg.pass && first ? "AUTH" : "SELECT", rp->str);
        conn_drop(c);
        return;
    }
    if (--c->setup_left == 0 && (ac->c.flags & REDIS_CONNECTED))
        conn_up(c);
}

/* Takes the runtime's configuration when it changed since c last connected. */
static int conn_config(tr__rconn *c)
{
    tr_redis *r = c->r;
    int rc = 0;
    if (atomic_load(&r->gen) == c->gen && c->cfg.host)
        return 0;
    pthread_mutex_lock(&r->lock);
    unsigned gen = atomic_load(&r->gen);
    rc = cfg_copy(&c->cfg, &r->cfg);
    if (rc == 0)
        c->gen = gen;
    pthread_mutex_unlock(&r->lock);
    return rc;
}

static void conn_fail_start(tr__rconn *c, const char *why)
{
    snprintf(c->why, sizeof c->why, "%s", why);
    conn_lost(c);
}

/* 1 when host is a name to look up (hiredis would block in getaddrinfo). */
static int is_name(const char *host)
{
    unsigned char addr[sizeof(struct in6_addr)];
    return host[0] != '\0' && inet_pton(AF_INET, host, addr) != 1 &&
           inet_pton(AF_INET6, host, addr) != 1;
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res);

/* Connects to addr (an IP address) with the configuration's port, AUTH and SELECT. */
static void connect_to(tr__rconn *c, const char *addr)
{
    redisAsyncContext *ac = redisAsyncConnect(addr, c->cfg.port);
    if (ac == NULL) {
        conn_fail_start(c, "out of memory");
        return;
    }
    if (ac->err) {
        char why[sizeof c->why];
        snprintf(why, sizeof why, "%s", ac->errstr);
        redisAsyncFree(ac);
        conn_fail_start(c, why);
        return;
    }
    if (rpoll_attach(ac, c->loop) < 0) {
        redisAsyncFree(ac);
        conn_fail_start(c, "cannot attach the connection to the loop");
        return;
    }
    ac->data = c;
    /* hiredis notices that connect(2) finished at the first write event, and it only
     * asks for one when a command is queued: ask now, so that a connection with
     * nothing to send (the subscriber's, an idle worker's) comes up too. */
    ac->ev.addWrite(ac->ev.data);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    c->ac = ac;
    c->state = TR__RC_CONNECTING;
    c->setup_left = 0;
    /* Queued ahead of every command: AUTH [user] password, SELECT db. */
    if (c->cfg.pass) {
        const char *argv[3] = { "AUTH", c->cfg.user ? c->cfg.user : c->cfg.pass, c->cfg.pass };
        redisAsyncCommandArgv(ac, on_setup, c, c->cfg.user ? 3 : 2, argv, NULL);
        c->setup_left++;
    }
    if (c->cfg.db) {
        redisAsyncCommand(ac, on_setup, c, "SELECT %d", c->cfg.db);
        c->setup_left++;
    }
    tr__redis_send_pending(c);
}

/* A connection attempt: a host name is looked up on libuv's thread pool first, then
 * connected to; the retry timer bounds the whole attempt. */
static void conn_start(tr__rconn *c)
{
    if (c->r->closing)
        return;
    if (conn_config(c) < 0) {
        conn_fail_start(c, "out of memory");
        return;
    }
    c->state = TR__RC_CONNECTING;
    int ms = atomic_load(&c->r->timeout_ms);
    uv_timer_start(&c->retry, on_retry, (uint64_t)ms, 0);
    if (!is_name(c->cfg.host)) {
        connect_to(c, c->cfg.host);
        return;
    }
    if (c->resolving)
        return;                  /* the lookup in flight connects when it is done */
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    c->gai.data = c;
    c->resolve_gen = c->gen;
    int rc = uv_getaddrinfo(c->loop, &c->gai, on_resolved, c->cfg.host, NULL, &hints);
    if (rc < 0) {
        char why[sizeof c->why];
        snprintf(why, sizeof why, "cannot resolve %s: %s", c->cfg.host, uv_strerror(rc));
        conn_fail_start(c, why);
        return;
    }
    c->resolving = 1;
    atomic_fetch_add(&c->r->resolving, 1);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    tr__rconn *c = req->data;
    tr_redis *r = c->r;
    c->resolving = 0;
    char addr[INET6_ADDRSTRLEN] = "";
    for (const struct addrinfo *a = status == 0 ? res : NULL; a && !addr[0]; a = a->ai_next) {
        if (a->ai_family == AF_INET)
            inet_ntop(AF_INET, &((const struct sockaddr_in *)a->ai_addr)->sin_addr, addr,
                      sizeof addr);
        else if (a->ai_family == AF_INET6)
            inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)a->ai_addr)->sin6_addr, addr,
                      sizeof addr);
    }
    uv_freeaddrinfo(res);
    if (c->close_expect) {       /* closing: the last of the three frees c */
        if (++c->closed == c->close_expect) {
            tr__rcfg_free(&c->cfg);
            tr_free(c);
        }
        atomic_fetch_sub(&r->resolving, 1);
        return;
    }
    atomic_fetch_sub(&r->resolving, 1);
    if (c->state != TR__RC_CONNECTING || c->ac)
        return;                  /* the attempt timed out meanwhile; a retry is due */
    if (c->resolve_gen != c->gen) {
        conn_start(c);           /* reconfigured meanwhile: look up the new host */
        return;
    }
    if (!addr[0]) {
        char why[sizeof c->why];
        snprintf(why, sizeof why, "cannot resolve %s: %s", c->cfg.host,
                 status < 0 ? uv_strerror(status) : "no IPv4 or IPv6 address");
        conn_fail_start(c, why);
        return;
    }
    connect_to(c, addr);
}

/* The retry timer while connecting: the attempt took too long. */
static void on_retry(uv_timer_t *t)
{
    tr__rconn *c = t->data;
    if (c->state == TR__RC_CONNECTING) {
        snprintf(c->why, sizeof c->why, "connect timed out");
        conn_drop(c);
    } else {
        conn_start(c);
    }
}

tr__rconn *tr__rconn_new(tr_redis *r, uv_loop_t *loop)
{
    tr__rconn *c = tr_malloc(sizeof *c);
    if (c == NULL)
        return NULL;
    memset(c, 0, sizeof *c);
    c->r = r;
    c->loop = loop;
    c->backoff_ms = BACKOFF_MIN_MS;
    c->pend_tail = &c->pend_head;
    uv_timer_init(loop, &c->retry);
    uv_timer_init(loop, &c->tmo);
    c->retry.data = c->tmo.data = c;
    /* hiredis writes with write(2): a server that went away must give EPIPE, not a
     * SIGPIPE that kills the process. Blocked on this worker thread only; a pending
     * SIGPIPE stays pending, harmlessly. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    conn_start(c);
    return c;
}

void tr__rconn_refresh(tr__rconn *c)
{
    if (atomic_load_explicit(&c->r->gen, memory_order_relaxed) == c->gen)
        return;
    snprintf(c->why, sizeof c->why, "reconfigured");
    if (c->ac)
        conn_drop(c);
    c->failed = 0;            /* a new server: wait for it rather than fail fast */
    c->backoff_ms = BACKOFF_MIN_MS;
    conn_start(c);
}

void tr__rconn_err(const tr__rconn *c, char *err, size_t errlen)
{
    snprintf(err, errlen, "redis: not connected (%s); retrying", c->why[0] ? c->why : "connecting");
}

static void conn_closed(uv_handle_t *h)
{
    tr__rconn *c = h->data;
    if (++c->closed == c->close_expect) {
        tr__rcfg_free(&c->cfg);
        tr_free(c);
    }
}

void tr__rconn_close(tr__rconn *c)
{
    c->on_down = c->on_up = NULL;
    if (c->ac) {
        redisAsyncContext *ac = c->ac;
        snprintf(c->why, sizeof c->why, "closing");
        c->ac = NULL;
        redisAsyncFree(ac);
    }
    tr__redis_fail_pending(c, "closing");
    c->close_expect = 2 + c->resolving;     /* two timers, and a lookup in flight */
    if (c->resolving)
        uv_cancel((uv_req_t *)&c->gai);    /* its callback still comes */
    uv_close((uv_handle_t *)&c->retry, conn_closed);
    uv_close((uv_handle_t *)&c->tmo, conn_closed);
}

/* ---- configuration ---- */

static int hexval(int ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* A %-decoded copy of s[0..n), or NULL (out of memory, or a bad escape: *bad set). */
static char *decode(const char *s, size_t n, int *bad)
{
    char *d = tr_malloc(n + 1), *o = d;
    if (d == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            int hi = i + 2 < n ? hexval(s[i + 1]) : -1, lo = hi >= 0 ? hexval(s[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                *bad = 1;
                tr_free(d);
                return NULL;
            }
            *o++ = (char)(hi * 16 + lo);
            i += 2;
        } else {
            *o++ = s[i];
        }
    }
    *o = '\0';
    return d;
}

/* Parses redis://[[user]:password@]host[:port][/db] into *cfg (which it owns on
 * success). 0, TR_EINVAL (err says why) or TR_ENOMEM. */
int tr__redis_parse_url(const char *url, tr__rcfg *cfg, char *err, size_t errlen)
{
    tr__rcfg c = { NULL, NULL, NULL, 6379, 0 };
    int bad = 0;
    const char *p = url;
    if (strncmp(p, "redis://", 8) != 0) {
        snprintf(err, errlen, "redis: the URL must start with redis:// (got \"%.64s\")", url);
        return TR_EINVAL;
    }
    p += 8;
    const char *end = p + strcspn(p, "/?#");
    const char *at = memchr(p, '@', (size_t)(end - p));
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon == NULL) {             /* redis://password@host: as redis-cli reads it */
            colon = p - 1;
        } else if (colon > p && (c.user = decode(p, (size_t)(colon - p), &bad)) == NULL) {
            goto fail;
        }
        if (at > colon + 1 && (c.pass = decode(colon + 1, (size_t)(at - colon - 1), &bad)) == NULL)
            goto fail;
        p = at + 1;
    }
    const char *host = p, *hend;
    if (*p == '[') {                     /* [v6 address] */
        hend = memchr(p, ']', (size_t)(end - p));
        if (hend == NULL) {
            bad = 1;
            goto fail;
        }
        host = p + 1;
        p = hend + 1;
    } else {
        hend = memchr(p, ':', (size_t)(end - p));
        if (hend == NULL)
            hend = end;
        p = hend;
    }
    if (hend == host) {
        host = "127.0.0.1";
        hend = host + 9;
    }
    if ((c.host = decode(host, (size_t)(hend - host), &bad)) == NULL)
        goto fail;
    if (*p == ':') {
        char *e;
        long port = strtol(p + 1, &e, 10);
        if (e == p + 1 || e != end || port < 1 || port > 65535) {
            bad = 1;
            goto fail;
        }
        c.port = (int)port;
    } else if (p != end) {
        bad = 1;
        goto fail;
    }
    if (*end == '/' && end[1] && end[1] != '?' && end[1] != '#') {
        char *e;
        long db = strtol(end + 1, &e, 10);
        if (e == end + 1 || (*e && *e != '?' && *e != '#') || db < 0 || db > 1000000) {
            bad = 1;
            goto fail;
        }
        c.db = (int)db;
    }
    *cfg = c;
    return 0;
fail:
    tr__rcfg_free(&c);
    if (!bad) {
        snprintf(err, errlen, "redis: out of memory");
        return TR_ENOMEM;
    }
    snprintf(err, errlen, "redis: bad URL \"%.96s\" (want redis://[[user]:password@]host"
                          "[:port][/db])", url);
    return TR_EINVAL;
}
