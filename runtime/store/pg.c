/*
 * pg.c — the Postgres driver: configuration, a pool per worker (FIFO wait queue,
 * growth, idle/lifetime/uses retirement, reconnect with backoff), transactions'
 * pinned connections, the slow log and the counters. pg_conn.c drives the
 * connections themselves.
 *
 * Everything of a pool is touched by its worker's thread only, with three
 * exceptions: the post queue (a mutex; how another thread reaches a pinned
 * connection), the counters (relaxed atomics, single writer) and the driver's
 * configuration and slow log (the driver's mutex, never on the hot path).
 *
 * Callbacks never run in the middle of the pool's bookkeeping: finished operations
 * go to a done list that the outermost entry point (tr__pg_leave) drains, so a
 * callback may call back into the driver.
 */
#include <arpa/inet.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "pg_int.h"

/* ---- configuration ---- */

void tr_pg_config_init(tr_pg_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->max = 8;
    cfg->connect_timeout_ms = 5000;
    cfg->acquire_timeout_ms = 5000;
    cfg->idle_timeout_ms = 10000;
    cfg->slow_ms = 1000;
    cfg->pipeline_depth = 64;
    cfg->busy_after_ms = 10;
}

static void env_int(const char *name, int *out)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0')
        return;
    char *end;
    long x = strtol(v, &end, 10);
    if (*end == '\0' && x >= 0 && x <= INT_MAX)
        *out = (int)x;
}

void tr_pg_config_env(tr_pg_config *cfg)
{
    const char *url = getenv("TROUPE_PG_URL");
    if (url && *url)
        cfg->url = url;
    env_int("TROUPE_PG_POOL_MAX", &cfg->max);
    env_int("TROUPE_PG_POOL_MIN", &cfg->min);
    env_int("TROUPE_PG_CONNECT_TIMEOUT_MS", &cfg->connect_timeout_ms);
    env_int("TROUPE_PG_ACQUIRE_TIMEOUT_MS", &cfg->acquire_timeout_ms);
    env_int("TROUPE_PG_IDLE_TIMEOUT_MS", &cfg->idle_timeout_ms);
    env_int("TROUPE_PG_MAX_LIFETIME_MS", &cfg->max_lifetime_ms);
    env_int("TROUPE_PG_MAX_USES", &cfg->max_uses);
    env_int("TROUPE_PG_STATEMENT_TIMEOUT_MS", &cfg->statement_timeout_ms);
    env_int("TROUPE_PG_SLOW_MS", &cfg->slow_ms);
    env_int("TROUPE_PG_PIPELINE", &cfg->pipeline_depth);
    env_int("TROUPE_PG_BUSY_AFTER_MS", &cfg->busy_after_ms);
    if (cfg->max < 1)
        cfg->max = 1;
    if (cfg->min > cfg->max)
        cfg->min = cfg->max;
    if (cfg->pipeline_depth < 1)
        cfg->pipeline_depth = 1;
}

char *tr__pg_strdup(const char *s)
{
    if (s == NULL)
        return NULL;
    size_t n = strlen(s) + 1;
    char *d = tr_malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

int tr_pg_configure(tr_pg *pg, const tr_pg_config *cfg, char *err, size_t errlen)
{
    if (cfg->max < 1 || cfg->min < 0 || cfg->min > cfg->max || cfg->pipeline_depth < 1 ||
        cfg->connect_timeout_ms < 0 || cfg->acquire_timeout_ms < 0 ||
        cfg->idle_timeout_ms < 0 || cfg->max_lifetime_ms < 0 || cfg->max_uses < 0 ||
        cfg->statement_timeout_ms < 0 || cfg->slow_ms < 0) {
        snprintf(err, errlen, "bad pool settings (max >= 1, 0 <= min <= max, no negative value)");
        return TR_EINVAL;
    }
    if (cfg->url && *cfg->url) {
        char *msg = NULL;
        PQconninfoOption *o = PQconninfoParse(cfg->url, &msg);
        if (o == NULL) {
            snprintf(err, errlen, "bad url: %s", msg ? msg : "out of memory");
            if (msg)
                PQfreemem(msg);
            return TR_EINVAL;
        }
        PQconninfoFree(o);
    }
    char *url = NULL;
    if (cfg->url && *cfg->url && (url = tr__pg_strdup(cfg->url)) == NULL) {
        snprintf(err, errlen, "out of memory");
        return TR_ENOMEM;
    }
    pthread_mutex_lock(&pg->lock);
    tr_free(pg->url);
    pg->url = url;
    pg->cfg = *cfg;
    pg->cfg.url = url;
    atomic_fetch_add_explicit(&pg->cfg_gen, 1, memory_order_release);
    pthread_mutex_unlock(&pg->lock);
    return 0;
}

void tr_pg_config_current(tr_pg *pg, tr_pg_config *out, char *url, size_t urlcap)
{
    pthread_mutex_lock(&pg->lock);
    *out = pg->cfg;
    out->url = NULL;
    if (pg->url && urlcap > 0) {
        snprintf(url, urlcap, "%s", pg->url);
        out->url = url;
    }
    pthread_mutex_unlock(&pg->lock);
}

/* The url's host when it is one name to look up: not a socket directory, not an
 * address, not a list, and no hostaddr given. libpq would resolve it with a blocking
 * getaddrinfo inside PQconnectPoll, on the worker's thread; the pool resolves it on
 * libuv's thread pool instead and hands libpq the addresses (pg_conn.c). */
static const char *resolvable_host(const char **kw, const char **val)
{
    const char *host = NULL;
    for (int i = 0; kw[i]; i++) {
        if (strcmp(kw[i], "hostaddr") == 0)
            return NULL;
        if (strcmp(kw[i], "host") == 0)
            host = val[i];
    }
    unsigned char addr[sizeof(struct in6_addr)];
    if (host == NULL || host[0] == '\0' || host[0] == '/' || host[0] == '@' ||
        strchr(host, ',') || inet_pton(AF_INET, host, addr) == 1 ||
        inet_pton(AF_INET6, host, addr) == 1 || strlen(host) > 253)
        return NULL;
    return host;
}

/* The pool's conninfo: the url's settings plus ours (ISO dates, hex bytea, UTF-8,
 * the statement timeout), added to the user's own `options`. */
void tr__pg_conninfo(pg_pool *p)
{
    tr_free(p->kw);
    tr_free(p->kwbuf);
    p->kw = p->val = NULL;
    p->kwbuf = NULL;
    p->resolve_host = NULL;
    char *msg = NULL;
    PQconninfoOption *o = PQconninfoParse(p->url ? p->url : "", &msg);
    if (o == NULL) {
        snprintf(p->cfg_err, sizeof p->cfg_err, "bad url: %s", msg ? msg : "out of memory");
        if (msg)
            PQfreemem(msg);
        return;
    }
    char extra[160];
    int xn = snprintf(extra, sizeof extra, "-c datestyle=ISO -c intervalstyle=postgres "
                      "-c bytea_output=hex -c extra_float_digits=1");
    if (p->cfg.statement_timeout_ms > 0)
        snprintf(extra + xn, sizeof extra - (size_t)xn, " -c statement_timeout=%d",
                 p->cfg.statement_timeout_ms);
    size_t n = 0, bytes = sizeof extra + 160, user_opts = 0, has_enc = 0, has_ka = 0;
    for (PQconninfoOption *i = o; i->keyword; i++)
        if (i->val) {
            n++;
            bytes += strlen(i->keyword) + strlen(i->val) + 2;
            if (strcmp(i->keyword, "options") == 0)
                user_opts = 1;
            if (strcmp(i->keyword, "client_encoding") == 0)
                has_enc = 1;
            if (strncmp(i->keyword, "keepalives", 10) == 0)
                has_ka = 1;
        }
    n += 7;
    p->kw = tr_malloc(sizeof(char *) * 2 * (n + 1));
    p->kwbuf = tr_malloc(bytes + sizeof extra);
    if (p->kw == NULL || p->kwbuf == NULL) {
        tr_free(p->kw);
        tr_free(p->kwbuf);
        p->kw = NULL;
        p->kwbuf = NULL;
        PQconninfoFree(o);
        snprintf(p->cfg_err, sizeof p->cfg_err, "out of memory");
        return;
    }
    p->val = p->kw + n + 1;
    char *b = p->kwbuf;
    size_t k = 0;
#define PUT(key, value) do {                                   \
        p->kw[k] = b; b = stpcpy(b, key) + 1;                  \
        p->val[k++] = b; b = stpcpy(b, value) + 1;             \
    } while (0)
    for (PQconninfoOption *i = o; i->keyword; i++) {
        if (i->val == NULL)
            continue;
        if (strcmp(i->keyword, "options") == 0) {
            p->kw[k] = b;
            b = stpcpy(b, "options") + 1;
            p->val[k++] = b;
            b += sprintf(b, "%s %s", i->val, extra) + 1;
        } else {
            PUT(i->keyword, i->val);
        }
    }
    if (!user_opts)
        PUT("options", extra);
    if (!has_enc)
        PUT("client_encoding", "UTF8");
    PUT("fallback_application_name", "troupe");
    if (!has_ka) {      /* notice a peer gone silent in about a minute, not hours */
        PUT("keepalives_idle", "30");
        PUT("keepalives_interval", "10");
        PUT("keepalives_count", "3");
    }
#undef PUT
    p->kw[k] = NULL;
    p->val[k] = NULL;
    PQconninfoFree(o);
    p->resolve_host = resolvable_host(p->kw, p->val);
}

/* Takes the driver's configuration if it changed since the pool last looked. */
/* ---- operations ---- */

static uint32_t hash_sql(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

pg_op *tr__pg_op_alloc(int kind, size_t extra)
{
    pg_op *op = tr_malloc(sizeof *op + extra);
    if (op) {
        memset(op, 0, sizeof *op);
        op->kind = (uint8_t)kind;
        op->t0_ns = uv_hrtime();
    }
    return op;
}

/* Copies q into one allocation: the op, the parameter array, then every string
 * (each NUL-terminated, as libpq wants text parameters). */
pg_op *tr__pg_op_new(const tr_pg_query *q)
{
    size_t n = (size_t)q->nparams, bytes = sizeof(tr_pg_param) * n + q->sql_len + 1;
    for (size_t i = 0; i < n; i++)
        bytes += q->params[i].len + 1 + (q->params[i].json ? q->params[i].json_len + 1 : 0);
    pg_op *op = tr__pg_op_alloc(OP_QUERY, bytes);
    if (op == NULL)
        return NULL;
    op->params = (tr_pg_param *)(void *)(op + 1);
    char *b = (char *)(op->params + n);
    op->nparams = q->nparams;
    op->timeout_ms = q->timeout_ms;
    for (size_t i = 0; i < n; i++) {
        const tr_pg_param *s = &q->params[i];
        tr_pg_param *d = &op->params[i];
        *d = *s;
        if (s->kind == TR_PG_PARAM_BYTES || s->kind == TR_PG_PARAM_TABLE)
            op->needs_types = 1;
        d->data = NULL;
        if (s->data) {
            memcpy(b, s->data, s->len);
            b[s->len] = '\0';
            d->data = b;
            b += s->len + 1;
        }
        if (s->json) {
            memcpy(b, s->json, s->json_len);
            b[s->json_len] = '\0';
            d->json = b;
            b += s->json_len + 1;
        }
    }
    memcpy(b, q->sql, q->sql_len);
    b[q->sql_len] = '\0';
    op->sql = b;
    op->sql_len = q->sql_len;
    op->hash = hash_sql(q->sql, q->sql_len);
    return op;
}

void tr__pg_op_free(pg_op *op)
{
    PQclear(op->res);
    tr_pg_error_free(op->err);
    tr_free(op);
}

/* ---- entering, leaving, callbacks ---- */

void tr__pg_enter(pg_pool *p)
{
    p->depth++;
}

static void run_done(pg_op *op)
{
    if (op->kind == OP_ACQUIRE) {
        op->acquired(op->arg, op->err ? NULL : op->conn, op->err);
        op->err = NULL;
    } else if (!op->internal && op->done) {
        op->done(op->arg, op->res, op->err);
        op->res = NULL;
        op->err = NULL;
    }
    tr__pg_op_free(op);
}

void tr__pg_leave(pg_pool *p)
{
    if (p->depth > 1) {
        p->depth--;
        return;
    }
    pg_op *op;
    while ((op = p->done_head)) {       /* depth stays 1: nested entries do not drain */
        p->done_head = op->next;
        if (p->done_head == NULL)
            p->done_tail = NULL;
        run_done(op);
    }
    p->depth = 0;
}

static void slow_record(tr_pg *pg, const pg_op *op, double ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    pthread_mutex_lock(&pg->lock);
    tr_pg_slow *s = &pg->slow[pg->slow_next];
    snprintf(s->sql, sizeof s->sql, "%.*s", (int)(op->sql_len < sizeof s->sql ? op->sql_len
                                                  : sizeof s->sql - 1), op->sql);
    s->ms = ms;
    s->nparams = op->nparams;
    s->at = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    snprintf(s->code, sizeof s->code, "%s",
             op->err && op->err->field[TR_PG_E_CODE] ? op->err->field[TR_PG_E_CODE] : "");
    pg->slow_next = (pg->slow_next + 1) % TR_PG_SLOW_MAX;
    if (pg->slow_n < TR_PG_SLOW_MAX)
        pg->slow_n++;
    pthread_mutex_unlock(&pg->lock);
}

void tr__pg_finish(pg_pool *p, pg_op *op)
{
    if (op->kind == OP_QUERY && !op->internal) {
        tr__pg_count(&p->n.queries, 1);
        if (op->err)
            tr__pg_count(&p->n.errors, 1);
        double ms = (double)(uv_hrtime() - op->t0_ns) / 1e6;
        if (p->cfg.slow_ms > 0 && ms >= p->cfg.slow_ms)
            slow_record(p->pg, op, ms);
    }
    op->next = NULL;
    if (p->done_tail)
        p->done_tail->next = op;
    else
        p->done_head = op;
    p->done_tail = op;
}

/* ---- submitting ---- */

/* First keyword of sql, past spaces and comments, is one that controls a
 * transaction: on a shared connection it would drag other queries into it. */
int tr_pg_tx_control(const char *s, size_t n)
{
    static const char *const words[] = { "BEGIN", "START", "COMMIT", "END", "ROLLBACK",
                                         "ABORT", "SAVEPOINT", "RELEASE", NULL };
    size_t i = 0;
    for (;;) {
        while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
            i++;
        if (i + 1 < n && s[i] == '-' && s[i + 1] == '-') {
            while (i < n && s[i] != '\n')
                i++;
        } else if (i + 1 < n && s[i] == '/' && s[i + 1] == '*') {
            const char *e = i + 2 < n ? memmem(s + i + 2, n - i - 2, "*/", 2) : NULL;
            i = e ? (size_t)(e - s) + 2 : n;
        } else {
            break;
        }
    }
    size_t j = i;
    while (j < n && ((s[j] | 0x20) >= 'a' && (s[j] | 0x20) <= 'z'))
        j++;
    for (int k = 0; words[k]; k++)
        if (strlen(words[k]) == j - i && strncasecmp(s + i, words[k], j - i) == 0)
            return 1;
    return 0;
}

int tr_pg_submit(tr_pg *pg, tr_pg_conn *conn, const tr_pg_query *q, tr_pg_done done,
                 void *arg)
{
    if (q->nparams < 0 || q->nparams > 65535 || memchr(q->sql, 0, q->sql_len))
        return TR_EINVAL;
    if (conn == NULL && tr_pg_tx_control(q->sql, q->sql_len))
        return TR_EINVAL;
    pg_pool *p = NULL;
    if (conn == NULL && (p = tr__pg_pool_here(pg)) == NULL)
        return pg->closing || tr_current_worker(pg->rt) < 0 ? TR_ESTATE : TR_ENOMEM;
    pg_op *op = tr__pg_op_new(q);
    if (op == NULL)
        return TR_ENOMEM;
    op->done = done;
    op->arg = arg;
    if (conn) {
        op->conn = conn;
        tr__pg_post(conn->pool, op);
        return 0;
    }
    tr__pg_enter(p);
    tr__pg_pool_refresh(p);
    tr__pg_pool_query(p, op);
    tr__pg_leave(p);
    return 0;
}

int tr_pg_acquire(tr_pg *pg, int timeout_ms, tr_pg_acquired cb, void *arg)
{
    pg_pool *p = tr__pg_pool_here(pg);
    if (p == NULL)
        return pg->closing || tr_current_worker(pg->rt) < 0 ? TR_ESTATE : TR_ENOMEM;
    pg_op *op = tr__pg_op_alloc(OP_ACQUIRE, 0);
    if (op == NULL)
        return TR_ENOMEM;
    op->acquired = cb;
    op->arg = arg;
    tr__pg_enter(p);
    tr__pg_pool_refresh(p);
    tr__pg_pool_acquire(p, op, timeout_ms);
    tr__pg_leave(p);
    return 0;
}

void tr_pg_release(tr_pg_conn *conn)
{
    pg_pool *p = conn->pool;
    if (p->pg->closing)
        return;                 /* the driver is closing every connection anyway */
    pg_op *op = tr__pg_op_alloc(OP_RELEASE, 0);
    if (op == NULL) {
        /* No memory for the message: the connection cannot go back safely from
         * another thread; leave it pinned (it is closed at the runtime's end). */
        return;
    }
    op->conn = conn;
    tr__pg_post(p, op);
}

/* ---- the driver ---- */

static void pg_free(void *ptr)
{
    tr_pg *pg = ptr;
    pg->closing = 1;
    for (int i = 0; i < pg->nworkers; i++) {
        pg_pool *p = atomic_load(&pg->pools[i]);
        if (p)
            tr__pg_pool_free(p);
    }
    pthread_mutex_destroy(&pg->lock);
    tr_free(pg->pools);
    tr_free(pg->url);
    tr_free(pg);
}

int tr_pg_get(tr_runtime *rt, tr_pg **out)
{
    tr_pg *pg = tr_runtime_ext(rt, TR_EXT_PG);
    if (pg) {
        *out = pg;
        return 0;
    }
    pg = tr_malloc(sizeof *pg);
    if (pg == NULL)
        return TR_ENOMEM;
    memset(pg, 0, sizeof *pg);
    pg->rt = rt;
    pg->nworkers = tr_runtime_workers(rt);
    pg->pools = tr_malloc(sizeof *pg->pools * (size_t)pg->nworkers);
    if (pg->pools == NULL || pthread_mutex_init(&pg->lock, NULL) != 0) {
        tr_free(pg->pools);
        tr_free(pg);
        return TR_ENOMEM;
    }
    for (int i = 0; i < pg->nworkers; i++)
        atomic_init(&pg->pools[i], NULL);
    tr_pg_config_init(&pg->cfg);
    tr_pg_config_env(&pg->cfg);
    pg->url = tr__pg_strdup(pg->cfg.url);
    pg->cfg.url = pg->url;
    if (tr_runtime_ext_set(rt, TR_EXT_PG, pg, pg_free) != 0) {
        pg_free(pg);                            /* another thread won */
        pg = tr_runtime_ext(rt, TR_EXT_PG);
        if (pg == NULL)
            return TR_ENOMEM;
    }
    *out = pg;
    return 0;
}

void tr_pg_stats_get(tr_pg *pg, tr_pg_stats *out)
{
    memset(out, 0, sizeof *out);
    for (int i = 0; i < pg->nworkers; i++) {
        pg_pool *p = atomic_load_explicit(&pg->pools[i], memory_order_acquire);
        if (p == NULL)
            continue;
        pg_counters *n = &p->n;
#define ADD(f) out->f += atomic_load_explicit(&n->f, memory_order_relaxed)
        ADD(connections); ADD(connecting); ADD(idle); ADD(pinned); ADD(inflight);
        ADD(waiting); ADD(queries); ADD(errors); ADD(prepared); ADD(connects);
        ADD(connect_failures); ADD(lost); ADD(acquire_timeouts);
#undef ADD
        uint64_t m = atomic_load_explicit(&n->max_inflight, memory_order_relaxed);
        if (m > out->max_inflight)
            out->max_inflight = m;
        out->pools_down += atomic_load_explicit(&n->down, memory_order_relaxed);
    }
}

int tr_pg_slow_queries(tr_pg *pg, tr_pg_slow *out, int max)
{
    pthread_mutex_lock(&pg->lock);
    int n = pg->slow_n < max ? pg->slow_n : max;
    int start = (pg->slow_next - pg->slow_n + TR_PG_SLOW_MAX) % TR_PG_SLOW_MAX;
    start = (start + (pg->slow_n - n)) % TR_PG_SLOW_MAX;   /* the newest n */
    for (int i = 0; i < n; i++)
        out[i] = pg->slow[(start + i) % TR_PG_SLOW_MAX];
    pthread_mutex_unlock(&pg->lock);
    return n;
}
