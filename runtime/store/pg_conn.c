/*
 * pg_conn.c — one libpq connection on a worker's loop: connecting, the statement
 * cache, sending queries as sync segments, matching results to them in order.
 *
 * A connection is always in pipeline mode. Each query is a segment of its own
 * (its commands, then a Sync), so the server runs it in an implicit transaction of
 * its own and an error aborts nothing else. The first use of a SQL text on a
 * connection also prepares it (Parse + Describe in the same segment); a query whose
 * parameters need the types (strings: bytea takes raw bytes; tables: arrays or JSON)
 * waits for the Describe, the others ride in the same segment.
 */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "pg_int.h"

#define BYTEAOID 17
#define JSONOID 114
#define JSONBOID 3802

const char *const tr_pg_error_names[TR_PG_E_NFIELDS] = {
    "severity", "code", "message", "detail", "hint", "position", "where", "schema",
    "table", "column", "datatype", "constraint"
};

/* ---- errors ---- */

static int code_unavailable(const char *code)
{
    return code && (strncmp(code, "08", 2) == 0 || strcmp(code, "57P01") == 0 ||
                    strcmp(code, "57P02") == 0 || strcmp(code, "57P03") == 0 ||
                    strcmp(code, "53300") == 0);
}

/* One allocation: the struct, then the strings. f[i] may be NULL. */
static tr_pg_error *error_build(const char *const f[TR_PG_E_NFIELDS], int unavailable)
{
    size_t total = sizeof(tr_pg_error);
    for (int i = 0; i < TR_PG_E_NFIELDS; i++)
        if (f[i])
            total += strlen(f[i]) + 1;
    tr_pg_error *e = tr_malloc(total);
    if (e == NULL)
        return NULL;
    char *p = (char *)(e + 1);
    e->unavailable = unavailable;
    for (int i = 0; i < TR_PG_E_NFIELDS; i++) {
        e->field[i] = NULL;
        if (f[i]) {
            size_t n = strlen(f[i]) + 1;
            memcpy(p, f[i], n);
            e->field[i] = p;
            p += n;
        }
    }
    return e;
}

void tr_pg_error_free(tr_pg_error *err)
{
    tr_free(err);
}

tr_pg_error *tr__pg_error_copy(const tr_pg_error *e)
{
    return e ? error_build(e->field, e->unavailable) : NULL;
}

/* libpq's messages end with a newline and may go on over lines: keep the first. */
static void first_line(char *out, size_t n, const char *msg)
{
    if (msg == NULL)
        msg = "";
    while (*msg == ' ' || *msg == '\n')
        msg++;
    size_t len = strcspn(msg, "\n");
    if (len >= n)
        len = n - 1;
    memcpy(out, msg, len);
    while (len > 0 && (out[len - 1] == ' ' || out[len - 1] == '\t' || out[len - 1] == '\r'))
        len--;
    out[len] = '\0';
}

tr_pg_error *tr__pg_error_new(const char *code, int unavailable, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *f[TR_PG_E_NFIELDS] = { 0 };
    f[TR_PG_E_SEVERITY] = "ERROR";
    f[TR_PG_E_CODE] = code;
    f[TR_PG_E_MESSAGE] = msg;
    return error_build(f, unavailable);
}

static tr_pg_error *error_from_result(tr_pg_conn *c, const PGresult *r)
{
    static const int diag[TR_PG_E_NFIELDS] = {
        PG_DIAG_SEVERITY_NONLOCALIZED, PG_DIAG_SQLSTATE, PG_DIAG_MESSAGE_PRIMARY,
        PG_DIAG_MESSAGE_DETAIL, PG_DIAG_MESSAGE_HINT, PG_DIAG_STATEMENT_POSITION,
        PG_DIAG_CONTEXT, PG_DIAG_SCHEMA_NAME, PG_DIAG_TABLE_NAME, PG_DIAG_COLUMN_NAME,
        PG_DIAG_DATATYPE_NAME, PG_DIAG_CONSTRAINT_NAME
    };
    const char *f[TR_PG_E_NFIELDS];
    for (int i = 0; i < TR_PG_E_NFIELDS; i++)
        f[i] = PQresultErrorField(r, diag[i]);
    if (f[TR_PG_E_CODE] == NULL) {        /* made by libpq itself: no SQLSTATE */
        char line[400];
        first_line(line, sizeof line, PQresultErrorMessage(r));
        int lost = c->pq == NULL || PQstatus(c->pq) == CONNECTION_BAD;
        return tr__pg_error_new(lost ? "08006" : "08P01", lost, "%s%s",
                                lost ? "connection lost: " : "", line);
    }
    if (f[TR_PG_E_SEVERITY] == NULL)
        f[TR_PG_E_SEVERITY] = "ERROR";
    return error_build(f, code_unavailable(f[TR_PG_E_CODE]));
}

/* The error for a connection that broke: libpq's reason, first line. */
static tr_pg_error *error_lost(tr_pg_conn *c)
{
    char line[400];
    first_line(line, sizeof line, c->pq ? PQerrorMessage(c->pq) : "");
    return tr__pg_error_new("08006", 1, "connection lost: %s",
                            line[0] ? line : "server closed the connection");
}

/* ---- handles ---- */

static void on_poll(uv_poll_t *h, int status, int events);

static void handle_closed(uv_handle_t *h)
{
    tr_pg_conn *c = h->data;
    if (h != (uv_handle_t *)&c->timer)
        tr_free(h);
    if (--c->handles == 0)
        tr__pg_conn_gone(c->pool, c);
}

static void poll_drop(tr_pg_conn *c)
{
    if (c->poll) {
        uv_close((uv_handle_t *)c->poll, handle_closed);
        c->poll = NULL;
        c->events = 0;
    }
}

/* Watches libpq's socket for events. renew: a new handle even for the same fd
 * number (while connecting, libpq may close a socket and open another one that
 * gets the same number). 0 or -1. */
int tr__pg_conn_watch(tr_pg_conn *c, int events, int renew)
{
    int fd = PQsocket(c->pq);
    if (fd < 0)
        return -1;
    if (c->poll && (renew || fd != c->fd))
        poll_drop(c);
    if (c->poll == NULL) {
        uv_poll_t *h = tr_malloc(sizeof *h);
        if (h == NULL)
            return -1;
        if (uv_poll_init(c->pool->loop, h, fd) != 0) {
            tr_free(h);
            return -1;
        }
        h->data = c;
        c->poll = h;
        c->fd = fd;
        c->events = 0;
        c->handles++;
    }
    if (events != c->events) {
        if (uv_poll_start(c->poll, events, on_poll) != 0)
            return -1;
        c->events = events;
    }
    return 0;
}

/* ---- connecting ---- */

static void notice_noop(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;   /* NOTICEs (DROP ... IF EXISTS) are not errors: node-pg drops them too */
}

void tr__pg_connect_failed(tr_pg_conn *c, const char *why)
{
    char line[400];
    first_line(line, sizeof line, why ? why : PQerrorMessage(c->pq));
    tr_pg_error *e = tr__pg_error_new("08001", 1, "cannot connect: %s",
                                      line[0] ? line : "unknown reason");
    tr__pg_conn_failed(c->pool, c, e, 0);
    tr_pg_error_free(e);
}

static void connect_step(tr_pg_conn *c)
{
    for (;;) {
        switch (PQconnectPoll(c->pq)) {
        case PGRES_POLLING_OK:
            uv_timer_stop(&c->timer);
            if (PQsetnonblocking(c->pq, 1) != 0 || PQenterPipelineMode(c->pq) != 1 ||
                tr__pg_conn_watch(c, UV_READABLE, 1) < 0) {
                tr__pg_connect_failed(c, "cannot enter pipeline mode");
                return;
            }
            c->state = CONN_READY;
            tr__pg_conn_ready(c->pool, c);
            return;
        case PGRES_POLLING_FAILED:
            tr__pg_connect_failed(c, NULL);
            return;
        case PGRES_POLLING_READING:
            if (tr__pg_conn_watch(c, UV_READABLE, 1) < 0)
                tr__pg_connect_failed(c, "cannot watch the socket");
            return;
        case PGRES_POLLING_WRITING:
            if (tr__pg_conn_watch(c, UV_WRITABLE, 1) < 0)
                tr__pg_connect_failed(c, "cannot watch the socket");
            return;
        default:
            break;   /* PGRES_POLLING_ACTIVE: call again */
        }
    }
}

static void on_connect_timeout(uv_timer_t *t)
{
    tr_pg_conn *c = t->data;
    if (c->closed || c->state != CONN_CONNECTING)
        return;
    pg_pool *p = c->pool;
    char why[64];
    snprintf(why, sizeof why, "timeout expired after %d ms", p->cfg.connect_timeout_ms);
    tr__pg_enter(p);
    tr__pg_connect_failed(c, why);
    tr__pg_leave(p);
}

/* libpq's connection object for the conninfo kw/val; NULL with *err set. */
PGconn *tr__pg_pq_start(const char *const *kw, const char *const *val, tr_pg_error **err)
{
    PGconn *pq = PQconnectStartParams(kw, val, 0);
    if (pq == NULL) {
        *err = tr__pg_error_new("53200", 0, "out of memory");
        return NULL;
    }
    PQsetNoticeProcessor(pq, notice_noop, NULL);
    if (PQstatus(pq) == CONNECTION_BAD) {
        char line[400];
        first_line(line, sizeof line, PQerrorMessage(pq));
        *err = tr__pg_error_new("08001", 1, "cannot connect: %s", line);
        PQfinish(pq);
        return NULL;
    }
    return pq;
}

/* A host name is looked up first (tr__pg_conn_start); else libpq starts now. */
tr_pg_conn *tr__pg_conn_open(pg_pool *p, tr_pg_error **err)
{
    *err = NULL;
    tr_pg_conn *c = tr_malloc(sizeof *c);
    if (c == NULL) {
        *err = tr__pg_error_new("53200", 0, "out of memory");
        return NULL;
    }
    memset(c, 0, sizeof *c);
    c->pool = p;
    c->fd = -1;
    c->gen = p->conn_gen;
    c->stmt_timeout_ms = p->cfg.statement_timeout_ms;
    c->created = c->idle_since = uv_now(p->loop);
    if (p->resolve_host == NULL && (c->pq = tr__pg_pq_start(p->kw, p->val, err)) == NULL) {
        tr_free(c);
        return NULL;
    }
    uv_timer_init(p->loop, &c->timer);
    c->timer.data = c;
    c->handles = 1;
    return c;
}

void tr__pg_conn_start(tr_pg_conn *c)
{
    int ms = c->pool->cfg.connect_timeout_ms;
    if (ms > 0)
        uv_timer_start(&c->timer, on_connect_timeout, (uint64_t)ms, 0);
    if (c->pq == NULL) {
        tr__pg_lookup(c);
        return;
    }
    /* Before the first PQconnectPoll, libpq says: wait until writable. */
    if (tr__pg_conn_watch(c, UV_WRITABLE, 1) < 0)
        tr__pg_connect_failed(c, "cannot watch the socket");
}

/* ---- the statement cache ---- */

static pg_stmt *stmt_find(tr_pg_conn *c, const pg_op *op)
{
    for (pg_stmt *s = c->stmts[op->hash % PG_STMT_BUCKETS]; s; s = s->next)
        if (s->hash == op->hash && s->sql_len == op->sql_len &&
            memcmp(s->sql, op->sql, op->sql_len) == 0)
            return s;
    return NULL;
}

static pg_stmt *stmt_new(tr_pg_conn *c, const pg_op *op)
{
    pg_stmt *s = tr_malloc(sizeof *s + op->sql_len + 1);
    if (s == NULL)
        return NULL;
    memset(s, 0, sizeof *s);
    s->hash = op->hash;
    s->sql_len = op->sql_len;
    memcpy(s->sql, op->sql, op->sql_len + 1);
    snprintf(s->name, sizeof s->name, "tr%u", ++c->stmt_seq);
    pg_stmt **b = &c->stmts[op->hash % PG_STMT_BUCKETS];
    s->next = *b;
    *b = s;
    c->nstmts++;
    return s;
}

static void stmt_unlink(tr_pg_conn *c, pg_stmt *st)
{
    for (pg_stmt **pp = &c->stmts[st->hash % PG_STMT_BUCKETS]; *pp; pp = &(*pp)->next)
        if (*pp == st) {
            *pp = st->next;
            c->nstmts--;
            return;
        }
}

/* ---- finishing queries ---- */

/* op is over (res or err set): the pool runs its callback. */
static void op_finished(tr_pg_conn *c, pg_op *op, int capacity)
{
    c->load--;
    tr__pg_count(&c->pool->n.inflight, -1);
    tr__pg_conn_update_idle(c);
    tr__pg_finish(c->pool, op);
    if (capacity)
        tr__pg_capacity(c->pool, c);
}

static void op_fail(tr_pg_conn *c, pg_op *op, tr_pg_error *err, int capacity)
{
    PQclear(op->res);
    op->res = NULL;
    tr_pg_error_free(op->err);
    op->err = err;
    op_finished(c, op, capacity);
}

/* Fails every waiter of st with copies of err. */
static void stmt_fail_waiters(tr_pg_conn *c, pg_stmt *st, const tr_pg_error *err, int capacity)
{
    pg_op *op;
    while ((op = st->wait_head)) {
        st->wait_head = op->next;
        op->next = NULL;
        op_fail(c, op, tr__pg_error_copy(err), capacity);
    }
    st->wait_tail = NULL;
}

/* ---- sending ---- */

static void conn_lost(tr_pg_conn *c);

/* The values, lengths and formats of op's parameters, given the statement's types
 * (NULL: unknown, for unprepared statements). NULL, or the error. */
static tr_pg_error *build_params(const pg_op *op, const pg_stmt *st, const char **v,
                                 int *len, int *fmt)
{
    for (int i = 0; i < op->nparams; i++) {
        const tr_pg_param *p = &op->params[i];
        Oid t = st && st->types && i < st->nparams ? st->types[i] : 0;
        v[i] = p->data;
        len[i] = (int)p->len;
        fmt[i] = 0;
        switch (p->kind) {
        case TR_PG_PARAM_NULL:
            v[i] = NULL;
            break;
        case TR_PG_PARAM_BYTES:
            if (t == BYTEAOID || (t == 0 && memchr(p->data, 0, p->len))) {
                fmt[i] = 1;     /* raw bytes: the server takes them as they are */
            } else if (memchr(p->data, 0, p->len)) {
                return tr__pg_error_new("22021", 0, "invalid byte sequence: parameter $%d "
                                        "contains a zero byte (only bytea takes those)", i + 1);
            }
            break;
        case TR_PG_PARAM_TABLE:
            if (p->json && (t == JSONOID || t == JSONBOID || p->data == NULL)) {
                v[i] = p->json;
                len[i] = (int)p->json_len;
            }
            break;
        default:
            break;
        }
    }
    return NULL;
}

static int send_timeout(tr_pg_conn *c, int ms)
{
    char v[24];
    snprintf(v, sizeof v, "%d", ms > 0 ? ms : 0);
    const char *vals[1] = { v };
    return PQsendQueryParams(c->pq, "SELECT set_config('statement_timeout', $1, true)", 1,
                             NULL, vals, NULL, NULL, 0);
}

static void seg_push(tr_pg_conn *c, pg_seg *s)
{
    s->next = NULL;
    if (c->seg_tail)
        c->seg_tail->next = s;
    else
        c->seg_head = s;
    c->seg_tail = s;
}

static void flush(tr_pg_conn *c)
{
    int rc = PQflush(c->pq);
    if (rc < 0) {
        conn_lost(c);
        return;
    }
    c->flushing = rc == 1;
    if (tr__pg_conn_watch(c, c->flushing ? UV_READABLE | UV_WRITABLE : UV_READABLE, 0) < 0)
        conn_lost(c);
}

/*
 * Sends one segment: [Parse, Describe] of st when prepare is set, then op (unless
 * NULL) with its statement timeout around it, then Sync. st NULL with op: the SQL
 * text unprepared. 0, or -1 when libpq refused (the connection is lost then; what
 * was queued is failed by conn_lost).
 */
static int send_segment(tr_pg_conn *c, pg_op *op, pg_stmt *st, int prepare)
{
    const char *vstack[16];
    int lstack[16], fstack[16];
    const char **v = vstack;
    int *len = lstack, *fmt = fstack;
    if (op && op->nparams > 16) {
        v = tr_malloc(sizeof *v * (size_t)op->nparams);
        len = tr_malloc(sizeof *len * (size_t)op->nparams);
        fmt = tr_malloc(sizeof *fmt * (size_t)op->nparams);
        if (v == NULL || len == NULL || fmt == NULL) {
            op_fail(c, op, tr__pg_error_new("53200", 0, "out of memory"), 1);
            op = NULL;
            if (!prepare)
                goto out;
        }
    }
    if (op) {
        tr_pg_error *e = build_params(op, st, v, len, fmt);
        if (e) {
            op_fail(c, op, e, 1);
            op = NULL;
            if (!prepare)
                goto out;
        }
    }
    pg_seg *s = op ? &op->seg : &st->seg;
    memset(s, 0, sizeof *s);
    s->op = op;
    s->stmt = prepare ? st : NULL;
    int ok = 1;
    if (prepare) {
        ok = PQsendPrepare(c->pq, st->name, st->sql, 0, NULL) &&
             PQsendDescribePrepared(c->pq, st->name);
        s->cmd[s->ncmds++] = CMD_PARSE;
        s->cmd[s->ncmds++] = CMD_DESCRIBE;
        tr__pg_count(&c->pool->n.prepared, 1);
    }
    int custom = op && op->timeout_ms != 0;
    if (ok && custom) {
        ok = send_timeout(c, op->timeout_ms);
        s->cmd[s->ncmds++] = CMD_SET_TIMEOUT;
    }
    if (ok && op) {
        ok = st ? PQsendQueryPrepared(c->pq, st->name, op->nparams, v, len, fmt, 0)
                : PQsendQueryParams(c->pq, op->sql, op->nparams, NULL, v, len, fmt, 0);
        s->cmd[s->ncmds++] = CMD_MAIN;
    }
    if (ok && custom && c->pinned) {   /* inside a transaction the LOCAL setting stays */
        ok = send_timeout(c, c->stmt_timeout_ms);
        s->cmd[s->ncmds++] = CMD_RESET_TIMEOUT;
    }
    if (ok)
        ok = PQpipelineSync(c->pq);
    seg_push(c, s);    /* even half-sent: conn_lost fails it with the others */
    if (!ok)
        conn_lost(c);
out:
    if (v != vstack) {
        tr_free(v);
        tr_free(len);
        tr_free(fmt);
    }
    return c->closed ? -1 : 0;
}

/* Corks c's socket until the loop next polls (on_uncork in pg_pool.c sends what it
 * holds then); a Unix socket cannot be corked and sends each query at once. */
static void coalesce(tr_pg_conn *c)
{
    if (c->corked || c->nocork)
        return;
    int on = 1;
    if (setsockopt(c->fd, IPPROTO_TCP, TCP_CORK, &on, sizeof on) == 0) {
        c->corked = 1;
        tr__pg_pool_arm_uncork(c->pool);
    } else {
        c->nocork = 1;
    }
}

void tr__pg_conn_send(tr_pg_conn *c, pg_op *op)
{
    op->conn = c;
    c->load++;
    c->uses++;
    tr__pg_conn_update_idle(c);
    pg_counters *n = &c->pool->n;
    tr__pg_count(&n->inflight, 1);
    if ((uint64_t)c->load > atomic_load_explicit(&n->max_inflight, memory_order_relaxed))
        atomic_store_explicit(&n->max_inflight, (uint64_t)c->load, memory_order_relaxed);
    if (c->closed || c->state != CONN_READY) {
        op_fail(c, op, tr__pg_error_new("08006", 1, "connection lost"), 1);
        return;
    }
    coalesce(c);
    pg_stmt *st = stmt_find(c, op);
    if (st && st->ready) {
        if (send_segment(c, op, st, 0) < 0)
            return;
    } else if (st) {
        op->next = NULL;             /* being prepared: wait for its types */
        if (st->wait_tail)
            st->wait_tail->next = op;
        else
            st->wait_head = op;
        st->wait_tail = op;
        return;
    } else if (c->nstmts < PG_STMT_MAX && (st = stmt_new(c, op)) != NULL) {
        if (op->needs_types) {
            st->wait_head = st->wait_tail = op;
            op->next = NULL;
            op = NULL;
        }
        if (send_segment(c, op, st, 1) < 0)
            return;
    } else if (send_segment(c, op, NULL, 0) < 0) {
        return;
    }
    if (!c->closed)
        flush(c);
}

/* ---- results ---- */

/* The prepare in s is over: the statement is ready (its waiters go out) or failed
 * (they fail with its error, and it leaves the cache so the next use prepares again). */
static void stmt_prepared(tr_pg_conn *c, pg_stmt *st, const tr_pg_error *err)
{
    if (err) {
        stmt_unlink(c, st);
        stmt_fail_waiters(c, st, err, 0);
        tr_free(st->types);
        tr_free(st);
        return;
    }
    st->ready = 1;
    pg_op *op = st->wait_head;
    st->wait_head = st->wait_tail = NULL;
    while (op) {
        pg_op *next = op->next;
        op->next = NULL;
        if (c->closed)     /* it broke while sending the ones before: st is gone too */
            op_fail(c, op, tr__pg_error_new("08006", 1, "connection lost"), 0);
        else
            send_segment(c, op, st, 0);
        op = next;
    }
    if (!c->closed)
        flush(c);
}

static void seg_done(tr_pg_conn *c, pg_seg *s)
{
    pg_op *op = s->op;
    pg_stmt *st = s->stmt;
    tr_pg_error *err = s->err;
    s->err = NULL;
    if (st) {
        int failed = err && (s->err_cmd == CMD_PARSE || s->err_cmd == CMD_DESCRIBE);
        stmt_prepared(c, st, failed ? err : NULL);
    }
    if (op) {
        if (err == NULL && op->res == NULL)
            err = tr__pg_error_new("08P01", 0, "no result for the query");
        op->err = err;
        if (err) {
            PQclear(op->res);
            op->res = NULL;
        }
        op_finished(c, op, 0);
    } else {
        tr_pg_error_free(err);
    }
    if (!c->closed && !c->pinned) {
        PGTransactionStatusType ts = PQtransactionStatus(c->pq);
        if (ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR) {
            /* A query opened a transaction on a shared connection: nothing else may
             * run in it. Close it (its later queries fail, they were in it too). */
            tr_pg_error *e = tr__pg_error_new("25000", 0, "connection closed: a query left "
                                              "a transaction open (use pg.transaction)");
            tr__pg_conn_failed(c->pool, c, e, 1);
            tr_pg_error_free(e);
            return;
        }
    }
    if (!c->closed)
        tr__pg_capacity(c->pool, c);
}

static void seg_feed(tr_pg_conn *c, pg_seg *s, PGresult *r)
{
    if (r == NULL) {
        if (s->cur < s->ncmds)
            s->cur++;
        else
            s->nulls++;
        return;
    }
    uint8_t cmd = s->cur < s->ncmds ? s->cmd[s->cur] : CMD_MAIN;
    switch (PQresultStatus(r)) {
    case PGRES_COMMAND_OK:
    case PGRES_TUPLES_OK:
    case PGRES_EMPTY_QUERY:
        if (cmd == CMD_DESCRIBE && s->stmt) {
            pg_stmt *st = s->stmt;
            st->nparams = PQnparams(r);
            if (st->nparams > 0 && (st->types = tr_malloc(sizeof(Oid) * (size_t)st->nparams)))
                for (int i = 0; i < st->nparams; i++)
                    st->types[i] = PQparamtype(r, i);
        } else if (cmd == CMD_MAIN && s->op && s->op->res == NULL) {
            s->op->res = r;
            return;
        }
        break;
    case PGRES_PIPELINE_ABORTED:
        break;
    case PGRES_COPY_IN:
    case PGRES_COPY_OUT:
    case PGRES_COPY_BOTH:
        if (s->err == NULL) {
            s->err = tr__pg_error_new("0A000", 0, "COPY is not supported");
            s->err_cmd = cmd;
        }
        break;
    default:
        if (s->err == NULL) {
            s->err = error_from_result(c, r);
            s->err_cmd = cmd;
        }
        break;
    }
    PQclear(r);
}

/* Takes every complete result libpq has and gives it to its segment. */
static void read_results(tr_pg_conn *c)
{
    while (c->seg_head && !c->closed) {
        if (PQisBusy(c->pq))
            return;
        pg_seg *s = c->seg_head;
        PGresult *r = PQgetResult(c->pq);
        if (r && PQresultStatus(r) == PGRES_PIPELINE_SYNC) {
            PQclear(r);
            c->seg_head = s->next;
            if (c->seg_head == NULL)
                c->seg_tail = NULL;
            seg_done(c, s);
            continue;
        }
        seg_feed(c, s, r);
        if (PQstatus(c->pq) == CONNECTION_BAD || s->nulls > 2)
            return;   /* the caller sees the state and fails the rest */
    }
}

static void conn_io(tr_pg_conn *c, int events)
{
    int eof = 0;
    if ((events & UV_READABLE) && !PQconsumeInput(c->pq))
        eof = 1;     /* read what arrived before the end first: it may say why */
    read_results(c);
    if (c->closed)
        return;
    PGnotify *note;
    while ((note = PQnotifies(c->pq)))    /* LISTEN is not supported: drop them */
        PQfreemem(note);
    if (eof || PQstatus(c->pq) == CONNECTION_BAD ||
        (c->seg_head && c->seg_head->nulls > 2)) {
        conn_lost(c);
        return;
    }
    if (c->flushing || (events & UV_WRITABLE))
        flush(c);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    tr_pg_conn *c = h->data;
    if (c->closed || h != c->poll)
        return;
    if (status < 0) {
        /* EPOLLERR: libuv has stopped the handle. libpq finds out what is wrong; if
         * the connection survives that (the error comes after data still to read),
         * the handle must be started again, or the connection never hears from its
         * socket again and its queries hang (pg_failover.sh saw 24 stuck for good). */
        events = UV_READABLE | UV_WRITABLE;
        c->events = 0;
    }
    pg_pool *p = c->pool;
    tr__pg_enter(p);
    if (c->state == CONN_CONNECTING)
        connect_step(c);
    else
        conn_io(c, events);
    if (!c->closed && c->poll == h && c->events == 0 && c->state == CONN_READY &&
        tr__pg_conn_watch(c, c->flushing ? UV_READABLE | UV_WRITABLE : UV_READABLE, 0) < 0)
        conn_lost(c);
    tr__pg_leave(p);
}

/* ---- closing ---- */

static void conn_lost(tr_pg_conn *c)
{
    if (c->closed)
        return;
    tr_pg_error *e = error_lost(c);
    tr__pg_conn_failed(c->pool, c, e, c->state == CONN_READY);
    tr_pg_error_free(e);
}

void tr__pg_conn_close(tr_pg_conn *c, const tr_pg_error *why)
{
    if (c->closed)
        return;
    c->closed = 1;
    c->state = CONN_BROKEN;
    pg_seg *s;
    while ((s = c->seg_head)) {
        c->seg_head = s->next;
        tr_pg_error *e = s->err;
        s->err = NULL;
        if (s->op)
            op_fail(c, s->op, e ? e : tr__pg_error_copy(why), 0);
        else
            tr_pg_error_free(e);
    }
    c->seg_tail = NULL;
    for (int b = 0; b < PG_STMT_BUCKETS; b++) {
        pg_stmt *st = c->stmts[b];
        while (st) {
            pg_stmt *next = st->next;
            stmt_fail_waiters(c, st, why, 0);
            tr_free(st->types);
            tr_free(st);
            st = next;
        }
        c->stmts[b] = NULL;
    }
    c->nstmts = 0;
    tr__pg_conn_update_idle(c);
    poll_drop(c);              /* before PQfinish closes the socket under it */
    if (c->resolving)
        uv_cancel((uv_req_t *)&c->gai);   /* its callback still comes, and frees */
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, handle_closed);
    if (c->pq) {
        PQfinish(c->pq);
        c->pq = NULL;
    }
}
