/*
 * redis.c — the Redis client: configuration, connections that reconnect, commands.
 *
 * A worker's command connection is a tr__rconn on that worker's loop. tr_redis_submit
 * appends the commands of a request to hiredis's output buffer (one request's commands
 * stay contiguous, so MULTI ... EXEC is atomic) and hiredis writes them when the loop
 * next polls: the commands of every coroutine on the worker leave together. Replies
 * come back in order; each is copied into the request's own flat buffer (the
 * redisReply is hiredis's and dies with the callback) and the finished request is
 * handed to its completion hook. The connections themselves: redis_conn.c.
 *
 * Timeouts: the requests in flight form a list sorted by deadline (appended at the
 * tail in the common case of one timeout for all) and one timer fires at the
 * earliest. A request that times out is answered with an error at once; its late
 * replies are read and dropped. When the connection fails, hiredis fails every
 * request in flight ("connection lost"); while it is down new ones fail at once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <strings.h>

#include "redis_int.h"

#define MAX_INFLIGHT   100000u  /* requests in flight per connection */
#define DEFAULT_TIMEOUT_MS 5000
#define DEFAULT_URL    "redis://127.0.0.1:6379/0"

struct tr__rop {
    tr_redis_result res;        /* first: the hook gets &op->res */
    tr__rconn      *c;
    tr__rop        *prev, *next;
    uint64_t        deadline;
    void          (*done)(tr_runtime *rt, tr_redis_result *res);
    uint32_t        expect;     /* callbacks hiredis still owes */
    uint32_t        seen;       /* replies seen */
    uint32_t        ncmds;      /* the caller's commands (MULTI/EXEC not counted) */
    int             timeout_ms;
    uint8_t         multi, finished, linked;
    int             fail;       /* status < 0 once the request failed */
    char           *qerr;       /* multi: the first command refused while queueing */
    char           *buf;
    size_t          len, cap;
    tr__rop        *pnext;      /* the connection's queue while its host is looked up */
    void           *kept;       /* then: a copy of the commands (argc, lens, argv, bytes) */
    char            inl[88];
};

/* ---- results ---- */

static void op_free(tr__rop *op)
{
    tr_free(op->kept);
    if (op->buf != op->inl)
        tr_free(op->buf);
    tr_free(op->qerr);
    tr_free(op);
}

void tr_redis_result_free(tr_redis_result *res)
{
    if (res)
        op_free((tr__rop *)res);
}

static tr__rop *op_new(void)
{
    tr__rop *op = tr_malloc(sizeof *op);
    if (op == NULL)
        return NULL;
    memset(op, 0, offsetof(tr__rop, inl));
    op->buf = op->inl;
    op->cap = sizeof op->inl;
    return op;
}

static int put(tr__rop *op, const void *p, size_t n)
{
    if (op->cap - op->len < n) {
        size_t cap = op->cap * 2;
        while (cap - op->len < n)
            cap *= 2;
        char *b = op->buf == op->inl ? tr_malloc(cap) : tr_realloc(op->buf, cap);
        if (b == NULL)
            return -1;
        if (op->buf == op->inl)
            memcpy(b, op->inl, op->len);
        op->buf = b;
        op->cap = cap;
    }
    memcpy(op->buf + op->len, p, n);
    op->len += n;
    return 0;
}

/* The flat encoding: a type byte, then an int64 (INT), or a uint32 length and the
 * bytes (STR, STATUS, ERR), or a uint32 count and the elements (ARRAY). */
static int put_head(tr__rop *op, tr_redis_type t, uint32_t n)
{
    char h[5];
    h[0] = (char)t;
    memcpy(h + 1, &n, 4);
    return put(op, h, 5);
}

static int put_str(tr__rop *op, tr_redis_type t, const char *s, size_t n)
{
    if (n > UINT32_MAX)
        return -1;
    return put_head(op, t, (uint32_t)n) || put(op, s, n) ? -1 : 0;
}

static int put_reply(tr__rop *op, const redisReply *rp)
{
    switch (rp->type) {
    case REDIS_REPLY_STRING: return put_str(op, TR_REDIS_STR, rp->str, rp->len);
    case REDIS_REPLY_STATUS: return put_str(op, TR_REDIS_STATUS, rp->str, rp->len);
    case REDIS_REPLY_ERROR:  return put_str(op, TR_REDIS_ERR, rp->str, rp->len);
    case REDIS_REPLY_INTEGER: {
        char h[9];
        int64_t v = rp->integer;
        h[0] = (char)TR_REDIS_INT;
        memcpy(h + 1, &v, 8);
        return put(op, h, 9);
    }
    case REDIS_REPLY_ARRAY:
        if (rp->elements > UINT32_MAX || put_head(op, TR_REDIS_ARRAY, (uint32_t)rp->elements))
            return -1;
        for (size_t i = 0; i < rp->elements; i++)
            if (put_reply(op, rp->element[i]))
                return -1;
        return 0;
    default:   /* REDIS_REPLY_NIL */
        return put_head(op, TR_REDIS_NIL, 0);
    }
}

int tr_redis_read(const char *data, size_t len, size_t *pos, tr_redis_item *it)
{
    size_t p = *pos;
    if (p >= len)
        return -1;
    it->type = (tr_redis_type)(unsigned char)data[p];
    it->str = NULL;
    it->len = 0;
    it->integer = 0;
    if (it->type == TR_REDIS_INT) {
        if (len - p < 9)
            return -1;
        memcpy(&it->integer, data + p + 1, 8);
        *pos = p + 9;
        return 0;
    }
    if (it->type > TR_REDIS_ARRAY || len - p < 5)
        return -1;
    uint32_t n;
    memcpy(&n, data + p + 1, 4);
    p += 5;
    it->len = n;
    if (it->type == TR_REDIS_STR || it->type == TR_REDIS_STATUS || it->type == TR_REDIS_ERR) {
        if (len - p < n)
            return -1;
        it->str = data + p;
        p += n;
    }
    *pos = p;
    return 0;
}

/* Replaces whatever op collected with the error msg. */
static void op_fail(tr__rop *op, int status, const char *msg)
{
    if (op->fail)
        return;
    op->fail = status;
    op->len = 0;
    if (put(op, msg, strlen(msg) + 1)) {
        op->len = 0;
        put(op, "redis: out of memory", 21);   /* fits in inl */
    }
}

static void deliver(tr__rop *op)
{
    tr_redis_result *res = &op->res;
    res->status = op->fail;
    if (op->fail) {
        res->err = op->buf;
        res->data = NULL;
        res->len = 0;
        res->count = 0;
    } else {
        res->err = NULL;
        res->data = op->buf;
        res->len = op->len;
        res->count = op->multi ? 1 : op->ncmds;
    }
    op->done(op->c->r->rt, res);
}

tr_redis_result *tr__redis_error_result(int status, const char *msg, const uint64_t user[2])
{
    tr__rop *op = op_new();
    if (op == NULL)
        return NULL;
    op_fail(op, status, msg);
    op->res.user[0] = user[0];
    op->res.user[1] = user[1];
    op->res.status = status;
    op->res.err = op->buf;
    return &op->res;
}

tr_redis_result *tr__redis_msg_result(const char *ch, size_t chlen, const char *msg,
                                      size_t msglen, const char *pat, size_t patlen,
                                      const uint64_t user[2])
{
    tr__rop *op = op_new();
    if (op == NULL)
        return NULL;
    if (put_str(op, TR_REDIS_STR, ch, chlen) || put_str(op, TR_REDIS_STR, msg, msglen) ||
        (pat && put_str(op, TR_REDIS_STR, pat, patlen))) {
        op_free(op);
        return NULL;
    }
    op->res.user[0] = user[0];
    op->res.user[1] = user[1];
    op->res.count = pat ? 3 : 2;
    op->res.data = op->buf;
    op->res.len = op->len;
    return &op->res;
}

/* ---- deadlines ---- */

static void on_tmo(uv_timer_t *t);

static void arm(tr__rconn *c)
{
    if (c->head == NULL || (c->tmo_at && c->tmo_at <= c->head->deadline))
        return;
    uint64_t now = uv_now(c->loop);
    c->tmo_at = c->head->deadline;
    uv_timer_start(&c->tmo, on_tmo, c->tmo_at > now ? c->tmo_at - now : 0, 0);
}

static void link_op(tr__rconn *c, tr__rop *op)
{
    tr__rop *after = c->tail;
    while (after && after->deadline > op->deadline)
        after = after->prev;
    op->prev = after;
    op->next = after ? after->next : c->head;
    if (op->next)
        op->next->prev = op;
    else
        c->tail = op;
    if (after)
        after->next = op;
    else
        c->head = op;
    op->linked = 1;
    arm(c);
}

static void unlink_op(tr__rconn *c, tr__rop *op)
{
    if (!op->linked)
        return;
    if (op->prev) op->prev->next = op->next; else c->head = op->next;
    if (op->next) op->next->prev = op->prev; else c->tail = op->prev;
    op->prev = op->next = NULL;
    op->linked = 0;
}

static void on_tmo(uv_timer_t *t)
{
    tr__rconn *c = t->data;
    uint64_t now = uv_now(c->loop);
    c->tmo_at = 0;
    while (c->head && c->head->deadline <= now) {
        tr__rop *op = c->head;
        char msg[64];
        snprintf(msg, sizeof msg, "redis: timed out after %d ms", op->timeout_ms);
        tr_redis_result *res = tr__redis_error_result(TR_ETIMEDOUT, msg, op->res.user);
        if (res == NULL) {          /* try again shortly */
            c->tmo_at = now + 10;
            uv_timer_start(&c->tmo, on_tmo, 10, 0);
            return;
        }
        unlink_op(c, op);
        op->finished = 1;
        op->done(c->r->rt, res);
    }
    arm(c);
}

/* ---- replies ---- */

static void on_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    tr__rop *op = priv;
    tr__rconn *c = op->c;
    const redisReply *rp = reply;
    uint32_t idx = op->seen++;
    op->expect--;
    if (!op->finished && !op->fail) {
        if (rp == NULL) {
            char msg[256];
            snprintf(msg, sizeof msg, "redis: connection lost (%s)",
                     ac->err && ac->errstr[0] ? ac->errstr : c->why);
            op_fail(op, TR_ESTATE, msg);
        } else if (!op->multi) {
            if (put_reply(op, rp))
                op_fail(op, TR_ENOMEM, "redis: out of memory");
        } else if (idx <= op->ncmds) {        /* MULTI's OK, then each QUEUED */
            if (rp->type == REDIS_REPLY_ERROR && op->qerr == NULL) {
                size_t n = rp->len + 32;
                op->qerr = tr_malloc(n);
                if (op->qerr)
                    snprintf(op->qerr, n, "command %u: %s", (unsigned)idx, rp->str);
            }
        } else if (rp->type == REDIS_REPLY_ERROR && op->qerr) {
            /* EXECABORT: say which command was refused, and why */
            size_t n = rp->len + strlen(op->qerr) + 4;
            char *m = tr_malloc(n);
            if (m)
                snprintf(m, n, "%s (%s)", rp->str, op->qerr);
            if (m == NULL || put_str(op, TR_REDIS_ERR, m, strlen(m)))
                op_fail(op, TR_ENOMEM, "redis: out of memory");
            tr_free(m);
        } else if (put_reply(op, rp)) {
            op_fail(op, TR_ENOMEM, "redis: out of memory");
        }
    }
    if (op->expect)
        return;
    c->inflight--;
    unlink_op(c, op);
    if (op->finished || c->r->closing)
        op_free(op);
    else
        deliver(op);
}

/* ---- commands ---- */

static int name_is(const char *s, size_t n, const char *name)
{
    return strlen(name) == n && strncasecmp(s, name, n) == 0;
}

/* A command that would change the shared connection for every coroutine on it. */
static const char *forbidden(const char *const *argv, const size_t *len, int argc)
{
    static const char *const names[] = {
        "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE",
        "SUNSUBSCRIBE", "MONITOR", "MULTI", "EXEC", "DISCARD", "WATCH", "UNWATCH",
        "SELECT", "QUIT", "HELLO", "RESET", "AUTH", "SYNC", "PSYNC"
    };
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (name_is(argv[0], len[0], names[i]))
            return names[i];
    if (argc >= 2 && name_is(argv[0], len[0], "CLIENT") && name_is(argv[1], len[1], "REPLY"))
        return "CLIENT REPLY";
    return NULL;
}

/* Queues op's commands on the connection (MULTI and EXEC around them if asked). */
static void send_op(tr__rconn *c, tr__rop *op, const int *argc, const char *const *argv,
                    const size_t *argvlen)
{
    /* hiredis refuses a command only when the context is being freed, which c->ac
     * never is; count what was queued anyway, so the callbacks stay balanced. */
    if (op->multi && redisAsyncCommand(c->ac, on_reply, op, "MULTI") == REDIS_OK)
        op->expect++;
    for (uint32_t i = 0, off = 0; i < op->ncmds; off += (uint32_t)argc[i++])
        if (redisAsyncCommandArgv(c->ac, on_reply, op, argc[i], (const char **)argv + off,
                                  argvlen + off) == REDIS_OK)
            op->expect++;
    if (op->multi && redisAsyncCommand(c->ac, on_reply, op, "EXEC") == REDIS_OK)
        op->expect++;
}

/* op->kept holds a copy of the commands: argc[ncmds], then (size_t-aligned)
 * lens[total], argv[total], and the argument bytes. */
typedef struct kept_view {
    int         *argc;
    size_t      *lens;
    const char **argv;
} kept_view;

/* Bytes before lens: argc, rounded up for the size_t that follow. */
static size_t kept_head(uint32_t ncmds)
{
    return (sizeof(int) * ncmds + sizeof(size_t) - 1) / sizeof(size_t) * sizeof(size_t);
}

/* The arrays of a kept block k of ncmds commands (its argc filled in). */
static kept_view kept_at(void *k, uint32_t ncmds)
{
    kept_view v = { k, (size_t *)((char *)k + kept_head(ncmds)), NULL };
    size_t total = 0;
    for (uint32_t i = 0; i < ncmds; i++)
        total += (size_t)v.argc[i];
    v.argv = (const char **)(v.lens + total);
    return v;
}

/* Copies req's commands into op->kept. */
static int keep(tr__rop *op, const tr_redis_req *req, const size_t *argvlen)
{
    size_t total = 0, bytes = 0;
    for (int i = 0; i < req->ncmds; i++)
        total += (size_t)req->argc[i];
    for (size_t i = 0; i < total; i++)
        bytes += argvlen[i];
    size_t arrays = kept_head((uint32_t)req->ncmds) + total * (sizeof(size_t) + sizeof(char *));
    char *k = tr_malloc(arrays + bytes);
    if (k == NULL)
        return TR_ENOMEM;
    memcpy(k, req->argc, sizeof(int) * (size_t)req->ncmds);
    kept_view v = kept_at(k, (uint32_t)req->ncmds);
    char *b = k + arrays;
    for (size_t i = 0; i < total; i++) {
        v.lens[i] = argvlen[i];
        memcpy(b, req->argv[i], argvlen[i]);
        v.argv[i] = b;
        b += argvlen[i];
    }
    op->kept = k;
    return 0;
}

/* Takes the connection's queue of commands that wait for it to exist. */
static tr__rop *take_pending(tr__rconn *c)
{
    tr__rop *op = c->pend_head;
    c->pend_head = NULL;
    c->pend_tail = &c->pend_head;
    return op;
}

/* op will get no reply: it leaves the connection, failed with msg unless it timed
 * out already or the driver is closing. */
static void drop_unanswered(tr__rconn *c, tr__rop *op, const char *msg)
{
    c->inflight--;
    unlink_op(c, op);
    if (op->finished || c->r->closing) {
        op_free(op);
    } else {
        op_fail(op, TR_ESTATE, msg);
        deliver(op);
    }
}

/* The connection exists now: sends the commands that waited for it, in order. */
void tr__redis_send_pending(tr__rconn *c)
{
    for (tr__rop *op = take_pending(c), *next; op; op = next) {
        next = op->pnext;
        op->pnext = NULL;
        if (!op->finished) {          /* not timed out while it waited */
            kept_view v = kept_at(op->kept, op->ncmds);
            send_op(c, op, v.argc, v.argv, v.lens);
        }
        tr_free(op->kept);
        op->kept = NULL;
        if (op->expect == 0)          /* timed out, or refused: nothing will answer */
            drop_unanswered(c, op, "redis: the connection refused the command");
    }
}

/* No connection after all (the lookup or the attempt failed, or closing): the
 * commands that waited for it fail with why. */
void tr__redis_fail_pending(tr__rconn *c, const char *why)
{
    char msg[256];
    snprintf(msg, sizeof msg, "redis: not connected (%s); retrying", why);
    for (tr__rop *op = take_pending(c), *next; op; op = next) {
        next = op->pnext;
        op->pnext = NULL;
        drop_unanswered(c, op, msg);
    }
}

int tr_redis_submit(tr_runtime *rt, const tr_redis_req *req, char *err, size_t errlen)
{
    char scratch[8];
    if (err == NULL) {
        err = scratch;
        errlen = sizeof scratch;
    }
    if (req->ncmds < 1 || req->done == NULL) {
        snprintf(err, errlen, "redis: no command");
        return TR_EINVAL;
    }
    size_t *lens = NULL;
    int total = 0;
    for (int i = 0; i < req->ncmds; i++) {
        if (req->argc[i] < 1) {
            snprintf(err, errlen, "redis: empty command");
            return TR_EINVAL;
        }
        total += req->argc[i];
    }
    if (req->argvlen == NULL) {
        lens = tr_malloc(sizeof *lens * (size_t)total);
        if (lens == NULL)
            goto nomem;
        for (int i = 0; i < total; i++)
            lens[i] = strlen(req->argv[i]);
    }
    const size_t *argvlen = lens ? lens : req->argvlen;
    for (int i = 0, off = 0; i < req->ncmds; off += req->argc[i++]) {
        const char *bad = forbidden(req->argv + off, argvlen + off, req->argc[i]);
        if (bad) {
            snprintf(err, errlen, "redis: %s is not allowed on the shared connection%s", bad,
                     strstr(bad, "SUBSCRIBE") ? " (use redis.subscribe)"
                     : strcmp(bad, "MULTI") == 0 || strcmp(bad, "EXEC") == 0 ? " (use redis.multi)"
                     : strcmp(bad, "SELECT") == 0 || strcmp(bad, "AUTH") == 0
                         ? " (put it in the URL)" : "");
            tr_free(lens);
            return TR_EINVAL;
        }
    }
    tr_redis *r = tr__redis_get(rt);
    int w = tr_current_worker(rt);
    if (r == NULL)
        goto nomem;
    if (w < 0) {
        tr_free(lens);
        snprintf(err, errlen, "redis: not on a worker thread of this runtime");
        return TR_ESTATE;
    }
    tr__rconn *c = r->conns[w];
    if (c == NULL && (c = r->conns[w] = tr__rconn_new(r, tr_worker_loop(rt, w))) == NULL)
        goto nomem;
    tr__rconn_refresh(c);
    if ((c->ac == NULL && !(c->resolving && !c->failed)) ||
        (c->failed && c->state != TR__RC_UP)) {
        tr_free(lens);
        tr__rconn_err(c, err, errlen);
        return TR_ESTATE;
    }
    if (c->inflight >= MAX_INFLIGHT) {
        tr_free(lens);
        snprintf(err, errlen, "redis: too many commands in flight (%u)", MAX_INFLIGHT);
        return TR_EOVERLOAD;
    }
    tr__rop *op = op_new();
    if (op == NULL)
        goto nomem;
    op->c = c;
    op->done = req->done;
    op->res.user[0] = req->user[0];
    op->res.user[1] = req->user[1];
    op->ncmds = (uint32_t)req->ncmds;
    op->multi = req->multi != 0;
    op->timeout_ms = req->timeout_ms > 0 ? req->timeout_ms : atomic_load(&r->timeout_ms);
    op->deadline = uv_now(c->loop) + (uint64_t)op->timeout_ms;
    if (c->ac == NULL) {
        /* The host name is being looked up: keep a copy of the commands, sent in
         * order once the connection exists (or failed with it). */
        if (keep(op, req, argvlen) < 0) {
            op_free(op);
            goto nomem;
        }
        tr_free(lens);
        *c->pend_tail = op;
        c->pend_tail = &op->pnext;
        c->inflight++;
        link_op(c, op);
        return 0;
    }
    send_op(c, op, req->argc, req->argv, argvlen);
    tr_free(lens);
    if (op->expect == 0) {
        op_free(op);
        snprintf(err, errlen, "redis: the connection refused the command");
        return TR_ESTATE;
    }
    c->inflight++;
    link_op(c, op);
    return 0;
nomem:
    tr_free(lens);
    snprintf(err, errlen, "redis: out of memory");
    return TR_ENOMEM;
}

int tr_redis_connected(tr_runtime *rt, char *err, size_t errlen)
{
    tr_redis *r = tr__redis_get(rt);
    int w = tr_current_worker(rt);
    if (r == NULL || w < 0) {
        snprintf(err, errlen, r ? "redis: not on a worker thread" : "redis: out of memory");
        return 0;
    }
    tr__rconn *c = r->conns[w];
    if (c == NULL && (c = r->conns[w] = tr__rconn_new(r, tr_worker_loop(rt, w))) == NULL) {
        snprintf(err, errlen, "redis: out of memory");
        return 0;
    }
    tr__rconn_refresh(c);
    if (c->state == TR__RC_UP)
        return 1;
    tr__rconn_err(c, err, errlen);
    return 0;
}

static void redis_free(void *p)
{
    tr_redis *r = p;
    r->closing = 1;
    for (int i = 0; i < r->nworkers; i++)
        if (r->conns[i])
            tr__rconn_close(r->conns[i]);
    tr__redis_sub_free(r);
    for (int i = 0; i < r->nworkers; i++)
        uv_run(tr_worker_loop(r->rt, i), UV_RUN_NOWAIT);
    while (atomic_load(&r->resolving) > 0) {   /* lookups that had started: they free */
        struct timespec ms = { 0, 1000000 };
        nanosleep(&ms, NULL);
        for (int i = 0; i < r->nworkers; i++)
            uv_run(tr_worker_loop(r->rt, i), UV_RUN_NOWAIT);
    }
    tr__rcfg_free(&r->cfg);
    pthread_mutex_destroy(&r->lock);
    tr_free(r->conns);
    tr_free(r);
}

tr_redis *tr__redis_get(tr_runtime *rt)
{
    tr_redis *r = tr_runtime_ext(rt, TR_EXT_REDIS);
    if (r)
        return r;
    r = tr_malloc(sizeof *r);
    if (r == NULL)
        return NULL;
    memset(r, 0, sizeof *r);
    r->rt = rt;
    r->nworkers = tr_runtime_workers(rt);
    r->conns = tr_malloc(sizeof *r->conns * (size_t)(r->nworkers > 0 ? r->nworkers : 1));
    const char *url = getenv("TROUPE_REDIS_URL");
    char err[256];
    int rc = TR_ENOMEM;
    if (r->conns)
        rc = tr__redis_parse_url(url && *url ? url : DEFAULT_URL, &r->cfg, err, sizeof err);
    if (rc == TR_EINVAL) {
        /* A bad TROUPE_REDIS_URL: say it once, use the default server. */
        fprintf(stderr, "troupe: TROUPE_REDIS_URL: %s\n", err);
        rc = tr__redis_parse_url(DEFAULT_URL, &r->cfg, err, sizeof err);
    }
    if (rc < 0) {
        tr_free(r->conns);
        tr_free(r);
        return NULL;
    }
    memset(r->conns, 0, sizeof *r->conns * (size_t)(r->nworkers > 0 ? r->nworkers : 1));
    const char *t = getenv("TROUPE_REDIS_TIMEOUT_MS");
    long ms = t && *t ? strtol(t, NULL, 10) : 0;
    atomic_init(&r->timeout_ms, ms > 0 && ms < 86400000 ? (int)ms : DEFAULT_TIMEOUT_MS);
    atomic_init(&r->gen, 1u);
    pthread_mutex_init(&r->lock, NULL);
    if (tr_runtime_ext_set(rt, TR_EXT_REDIS, r, redis_free) != 0) {
        tr__rcfg_free(&r->cfg);                    /* another thread won the race */
        pthread_mutex_destroy(&r->lock);
        tr_free(r->conns);
        tr_free(r);
        r = tr_runtime_ext(rt, TR_EXT_REDIS);
    }
    return r;
}

int tr_redis_configure(tr_runtime *rt, const char *url, int timeout_ms, char *err,
                       size_t errlen)
{
    tr_redis *r = tr__redis_get(rt);
    if (r == NULL) {
        snprintf(err, errlen, "redis: out of memory");
        return TR_ENOMEM;
    }
    if (url) {
        tr__rcfg cfg;
        int rc = tr__redis_parse_url(url, &cfg, err, errlen);
        if (rc < 0)
            return rc;
        pthread_mutex_lock(&r->lock);
        tr__rcfg_free(&r->cfg);
        r->cfg = cfg;
        atomic_fetch_add(&r->gen, 1u);
        pthread_mutex_unlock(&r->lock);
    }
    if (timeout_ms > 0)
        atomic_store(&r->timeout_ms, timeout_ms);
    if (url)
        tr__redis_sub_poke(rt);
    return 0;
}
