/*
 * bindings/pg.c — the troupe.pg Lua module, over runtime/store/pg.h.
 *
 *   local pg = require "troupe.pg"
 *   local rows, err = pg.query("SELECT id, name FROM users WHERE id = $1", id)
 *   rows[1].name; #rows; rows.affected; rows.command
 *   pg.query{ text = "SELECT pg_sleep($1)", values = { 5 }, timeout = 0.1 }
 *   local row = pg.query_one("SELECT ...", ...)          -- the first row, or nil
 *   local all = pg.batch{ { "SELECT ... $1", 7 }, "SELECT ...", { text =, values = } }
 *       -- every query sent at once (pipelined), like Promise.all: all[i] is the rows
 *       -- of query i; or nil, err for the first that failed (err.index = i)
 *   pg.transaction(function(tx) tx:query(...) ... end)   -- commit on return
 *   pg.transaction({ isolation = "serializable" }, fn, ...)
 *   pg.null; pg.configure{ max = 4, ... }; pg.config(); pg.stats(); pg.slow_queries()
 *
 * A failure returns nil, err: err is a table { code = SQLSTATE, message, severity,
 * detail?, hint?, constraint?, ..., unavailable? } printing as "ERROR 23505: ...".
 * Inside an HTTP handler an unavailable database (cannot connect, connection lost,
 * no connection within the acquire timeout, server shutting down) raises
 * troupe.errors.new(503, ...) instead. Misuse raises.
 *
 * The C functions below are the raw layer (they take the transaction handle first);
 * the Lua layer at the bottom adds transactions (a pinned connection; nested ones
 * are savepoints; queries made by the same coroutine inside pg.transaction's
 * function use it) and the 503.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <string.h>

#include <lauxlib.h>

#include "http.h"
#include "json.h"
#include "lactor.h"
#include "pg.h"
#include "pg_lua.h"

/* Raises a misuse error at the user's line (one level up, past the Lua layer). */
static int misuse(lua_State *L, const char *fmt, ...)
{
    lua_Debug ar;
    int level = 1;
    while (lua_getstack(L, level, &ar) && lua_getinfo(L, "S", &ar) &&
           strcmp(ar.source, "=troupe.pg") == 0)
        level++;
    va_list ap;
    va_start(ap, fmt);
    luaL_where(L, level);
    lua_pushvfstring(L, fmt, ap);
    va_end(ap);
    lua_concat(L, 2);
    return lua_error(L);
}

static tr_pg *driver(lua_State *L, tr_lactor **lap)
{
    tr_lactor *la = tr_lactor_of(L);
    if (la == NULL || tr_lactor_ctx(la) == NULL)
        misuse(L, "troupe.pg: not inside an actor");
    tr_pg *pg;
    if (tr_pg_get(tr_ctx_runtime(tr_lactor_ctx(la)), &pg) < 0)
        luaL_error(L, "not enough memory");
    if (lap)
        *lap = la;
    return pg;
}

/* ---- transaction handles ---- */

static const char tx_mt[] = "troupe.pg.tx";

typedef struct tx_handle {
    tr_pg_conn *conn;      /* NULL once released */
} tx_handle;

static int tx_gc(lua_State *L)
{
    tx_handle *h = luaL_checkudata(L, 1, tx_mt);
    if (h->conn) {
        tr_pg_release(h->conn);
        h->conn = NULL;
    }
    return 0;
}

static void push_tx(lua_State *L, tr_pg_conn *conn)
{
    tx_handle *h = lua_newuserdatauv(L, sizeof *h, 0);
    h->conn = NULL;
    if (luaL_newmetatable(L, tx_mt)) {
        lua_pushcfunction(L, tx_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, tx_gc);
        lua_setfield(L, -2, "__close");
    }
    lua_setmetatable(L, -2);
    h->conn = conn;      /* only now: a memory error above leaves the wait owning it */
}

/* ---- waiting for the driver ---- */

enum { W_ROWS, W_ONE, W_ACQUIRE };

typedef struct pg_wait {
    tr_lactor_result base;     /* first: tr_lactor_complete takes it */
    tr_runtime      *rt;
    tr_pid           pid;
    int              kind;
    PGresult        *res;
    tr_pg_error     *err;
    tr_pg_conn      *conn;
} pg_wait;

static int wait_push(lua_State *L, tr_lactor_result *r)
{
    pg_wait *w = (pg_wait *)r;
    if (w->kind == W_ACQUIRE && w->conn) {
        push_tx(L, w->conn);
        w->conn = NULL;
        return 1;
    }
    if (w->res)
        return tr_pg_push_rows(L, w->res, w->kind == W_ONE);
    lua_pushnil(L);
    tr_pg_push_error(L, w->err);   /* NULL: out of memory */
    return 2;
}

static void wait_free(tr_lactor_result *r)
{
    pg_wait *w = (pg_wait *)r;
    PQclear(w->res);
    tr_pg_error_free(w->err);
    if (w->conn)                   /* acquired for a coroutine that no longer waits */
        tr_pg_release(w->conn);
    tr_free(w);
}

static void on_done(void *arg, PGresult *res, tr_pg_error *err)
{
    pg_wait *w = arg;
    w->res = res;
    w->err = err;
    tr_lactor_complete(w->rt, w->pid, &w->base);
}

static void on_acquired(void *arg, tr_pg_conn *conn, tr_pg_error *err)
{
    pg_wait *w = arg;
    w->conn = conn;
    w->err = err;
    tr_lactor_complete(w->rt, w->pid, &w->base);
}

static pg_wait *wait_new(lua_State *L, tr_lactor *la, int kind)
{
    if (!lua_isyieldable(L))
        misuse(L, "troupe.pg: cannot wait here (only in a handler or the main script, "
                  "not in init or terminate)");
    pg_wait *w = tr_malloc(sizeof *w);
    if (w) {
        memset(w, 0, sizeof *w);
        w->base.ref = tr_lactor_new_ref();
        w->base.push = wait_push;
        w->base.free = wait_free;
        w->rt = tr_ctx_runtime(tr_lactor_ctx(la));
        w->pid = tr_self(tr_lactor_ctx(la));
        w->kind = kind;
    }
    return w;
}

static int fail_nomem(lua_State *L)
{
    lua_pushnil(L);
    tr_pg_push_error(L, NULL);
    return 2;
}

/* Seconds (number) to ms: nil -> dflt; 0 or false -> -1 (none). */
static int opt_timeout(lua_State *L, int idx, int dflt)
{
    if (lua_isnoneornil(L, idx))
        return dflt;
    if (lua_isboolean(L, idx) && !lua_toboolean(L, idx))
        return -1;
    lua_Number s = luaL_checknumber(L, idx);
    if (isnan(s) || s < 0)
        misuse(L, "troupe.pg: a timeout is a number of seconds >= 0");
    if (s == 0)
        return -1;
    return s >= 2147483.0 ? INT32_MAX : (int)(s * 1000 + 0.5) ? (int)(s * 1000 + 0.5) : 1;
}

/* The connection of the transaction handle at idx, or NULL for nil (the pool). */
static tr_pg_conn *tx_conn(lua_State *L, int idx)
{
    if (lua_isnil(L, idx))
        return NULL;
    tx_handle *h = luaL_checkudata(L, idx, tx_mt);
    if (h->conn == NULL)
        misuse(L, "troupe.pg: this transaction is over");
    return h->conn;
}

/* Pushes the parameters t[from], t[from + 1], ...: as many as t.n (or #t) counts
 * past the from - 1 entries before them. Returns how many, or -1 when that is not
 * 0 .. 65535 (nothing pushed). t is an absolute index. */
static int push_params(lua_State *L, int t, int from)
{
    lua_getfield(L, t, "n");
    lua_Integer n = (lua_isinteger(L, -1) ? lua_tointeger(L, -1)
                                          : (lua_Integer)lua_rawlen(L, t)) - (from - 1);
    lua_pop(L, 1);
    if (n < 0 || n > 65535)
        return -1;
    luaL_checkstack(L, (int)n + 8, "too many parameters");
    for (lua_Integer k = 0; k < n; k++)
        lua_rawgeti(L, t, from + k);
    return (int)n;
}

/* query(tx | nil, sql, ...) / query(tx | nil, { text =, values =, timeout = }) */
static int do_query(lua_State *L, int kind)
{
    tr_lactor *la;
    tr_pg *pg = driver(L, &la);
    tr_pg_conn *conn = tx_conn(L, 1);
    tr_pg_query q = { 0 };
    int first, n;                  /* the parameters: stack slots first .. first+n-1 */
    if (lua_istable(L, 2)) {
        if (lua_getfield(L, 2, "text") != LUA_TSTRING) {
            lua_pop(L, 1);
            if (lua_getfield(L, 2, "sql") != LUA_TSTRING)
                misuse(L, "troupe.pg: the query table needs text = \"SQL\"");
        }
        q.sql = lua_tolstring(L, -1, &q.sql_len);
        lua_getfield(L, 2, "timeout");
        q.timeout_ms = opt_timeout(L, -1, 0);
        lua_pop(L, 1);
        first = lua_gettop(L) + 1;
        n = 0;
        if (lua_getfield(L, 2, "values") == LUA_TTABLE) {
            first = lua_gettop(L) + 1;
            if ((n = push_params(L, first - 1, 1)) < 0)
                misuse(L, "troupe.pg: at most 65535 parameters");
        } else if (!lua_isnil(L, -1)) {
            misuse(L, "troupe.pg: values must be a table");
        }
    } else {
        if (lua_type(L, 2) != LUA_TSTRING)
            misuse(L, "troupe.pg: the SQL text must be a string, got %s", luaL_typename(L, 2));
        q.sql = lua_tolstring(L, 2, &q.sql_len);
        first = 3;
        n = lua_gettop(L) - 2;
    }
    if (n > 65535)
        misuse(L, "troupe.pg: at most 65535 parameters");
    if (memchr(q.sql, 0, q.sql_len))
        misuse(L, "troupe.pg: the SQL text contains a zero byte");
    tr_pg_param pstack[16], *params = pstack;
    if (n > 16)
        params = lua_newuserdatauv(L, sizeof *params * (size_t)n, 0);
    pg_wait *w = wait_new(L, la, kind);
    if (w == NULL)
        return fail_nomem(L);
    /* From here until b is freed nothing may raise. */
    tr_buf b = { 0 };
    const char *why = NULL;
    int bad = 0, rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        rc = tr_pg_param_encode(L, first + i, &params[i], &b, &why);
        bad = i + 1;
    }
    if (rc == 0) {
        tr_pg_params_fix(params, n, &b);
        q.params = params;
        q.nparams = n;
        rc = tr_pg_submit(pg, conn, &q, on_done, w);
    }
    tr_buf_free(&b);
    if (rc < 0) {
        tr_free(w);
        if (rc == TR_ENOMEM)
            return fail_nomem(L);
        if (why)
            return misuse(L, "troupe.pg: parameter $%d: %s", bad, why);
        if (rc == TR_ESTATE)
            return misuse(L, "troupe.pg: not on a worker of the runtime");
        return misuse(L, "troupe.pg: BEGIN, COMMIT, ROLLBACK, SAVEPOINT and the like run "
                         "only inside pg.transaction (pooled connections are shared)");
    }
    return tr_lactor_wait(L, w->base.ref);
}

static int l_query(lua_State *L)     { return do_query(L, W_ROWS); }
static int l_query_one(lua_State *L) { return do_query(L, W_ONE); }

/* ---- batches: several queries in flight at once, one wait ---- */

typedef struct pg_batch pg_batch;

typedef struct batch_slot {
    pg_batch    *b;
    PGresult    *res;
    tr_pg_error *err;
} batch_slot;

struct pg_batch {
    tr_lactor_result base;     /* first: tr_lactor_complete takes it */
    tr_runtime      *rt;
    tr_pid           pid;
    int              n;
    atomic_int       pending;  /* slots not done yet, + 1 while submitting */
    batch_slot       slot[];
};

static int batch_push(lua_State *L, tr_lactor_result *r)
{
    pg_batch *b = (pg_batch *)r;
    for (int i = 0; i < b->n; i++) {
        batch_slot *s = &b->slot[i];
        if (s->res == NULL) {
            lua_pushnil(L);
            tr_pg_push_error(L, s->err);    /* NULL: out of memory */
            lua_pushinteger(L, i + 1);
            lua_setfield(L, -2, "index");
            return 2;
        }
    }
    lua_createtable(L, b->n, 0);
    for (int i = 0; i < b->n; i++) {
        tr_pg_push_rows(L, b->slot[i].res, 0);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

static void batch_free(tr_lactor_result *r)
{
    pg_batch *b = (pg_batch *)r;
    for (int i = 0; i < b->n; i++) {
        PQclear(b->slot[i].res);
        tr_pg_error_free(b->slot[i].err);
    }
    tr_free(b);
}

static void batch_unref(pg_batch *b)
{
    if (atomic_fetch_sub_explicit(&b->pending, 1, memory_order_acq_rel) == 1)
        tr_lactor_complete(b->rt, b->pid, &b->base);
}

static void on_batch_done(void *arg, PGresult *res, tr_pg_error *err)
{
    batch_slot *s = arg;
    s->res = res;
    s->err = err;
    batch_unref(s->b);
}

/* One query of a batch, as found on the stack by batch_collect. */
typedef struct batch_query {
    int sql;          /* stack index of the SQL text */
    int first, n;     /* its parameters: stack slots first .. first+n-1 */
    int timeout_ms;
} batch_query;

/* Pushes the SQL and parameters of list[i] (a string, { sql, p1, ... } or
 * { text =, values =, timeout = }) onto the stack and describes them in q. */
static void batch_collect(lua_State *L, int list, int i, batch_query *q)
{
    int t = lua_rawgeti(L, list, i);
    q->timeout_ms = 0;
    q->n = 0;
    if (t == LUA_TSTRING) {
        q->sql = lua_gettop(L);
        q->first = q->sql + 1;
        return;
    }
    if (t != LUA_TTABLE)
        misuse(L, "troupe.pg.batch: query %d must be a string or a table, got %s", i,
               luaL_typename(L, -1));
    int spec = lua_gettop(L);
    if (lua_rawgeti(L, spec, 1) == LUA_TSTRING) {          /* { sql, p1, p2, ... } */
        q->sql = lua_gettop(L);
        q->first = q->sql + 1;
        if ((q->n = push_params(L, spec, 2)) < 0)
            misuse(L, "troupe.pg.batch: query %d: at most 65535 parameters", i);
        return;
    }
    lua_pop(L, 1);
    lua_pushliteral(L, "text");
    if (lua_rawget(L, spec) != LUA_TSTRING) {
        lua_pop(L, 1);
        lua_pushliteral(L, "sql");
        if (lua_rawget(L, spec) != LUA_TSTRING)
            misuse(L, "troupe.pg.batch: query %d needs its SQL text ({ sql, ... } or "
                      "{ text = sql, values = {...} })", i);
    }
    q->sql = lua_gettop(L);
    lua_pushliteral(L, "timeout");
    lua_rawget(L, spec);
    q->timeout_ms = opt_timeout(L, -1, 0);
    lua_pop(L, 1);
    lua_pushliteral(L, "values");
    int vt = lua_rawget(L, spec);
    if (vt == LUA_TTABLE) {
        q->first = lua_gettop(L) + 1;
        if ((q->n = push_params(L, q->first - 1, 1)) < 0)
            misuse(L, "troupe.pg.batch: query %d: at most 65535 parameters", i);
    } else if (vt != LUA_TNIL) {
        misuse(L, "troupe.pg.batch: query %d: values must be a table", i);
    } else {
        q->first = lua_gettop(L) + 1;
    }
}

/* batch(tx | nil, { query, ... }) -> { rows, ... } | nil, err (err.index: which) */
static int l_batch(lua_State *L)
{
    tr_lactor *la;
    tr_pg *pg = driver(L, &la);
    tr_pg_conn *conn = tx_conn(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_Integer count = (lua_Integer)lua_rawlen(L, 2);
    if (count > 100000)
        misuse(L, "troupe.pg.batch: at most 100000 queries in a batch");
    int n = (int)count;
    if (n == 0) {
        lua_createtable(L, 0, 0);
        return 1;
    }
    if (!lua_isyieldable(L))
        misuse(L, "troupe.pg: cannot wait here (only in a handler or the main script, "
                  "not in init or terminate)");
    lua_settop(L, 2);
    batch_query *qs = lua_newuserdatauv(L, sizeof *qs * (size_t)n, 0);
    int total = 0;
    for (int i = 0; i < n; i++) {
        luaL_checkstack(L, 8, "too many queries");
        batch_collect(L, 2, i + 1, &qs[i]);
        size_t len;
        const char *sql = lua_tolstring(L, qs[i].sql, &len);
        if (memchr(sql, 0, len))
            misuse(L, "troupe.pg.batch: query %d: the SQL text contains a zero byte", i + 1);
        if (conn == NULL && tr_pg_tx_control(sql, len))
            misuse(L, "troupe.pg.batch: query %d: BEGIN, COMMIT, ROLLBACK, SAVEPOINT and the "
                      "like run only inside pg.transaction", i + 1);
        total += qs[i].n;
    }
    tr_pg_param *params = lua_newuserdatauv(L, sizeof *params * (size_t)(total ? total : 1), 0);
    /* From here until b is freed nothing may raise. */
    tr_buf b = { 0 };
    const char *why = NULL;
    int rc = 0, at = 0, bad_q = 0, bad_p = 0;
    for (int i = 0; i < n && rc == 0; i++)
        for (int k = 0; k < qs[i].n && rc == 0; k++, at++) {
            rc = tr_pg_param_encode(L, qs[i].first + k, &params[at], &b, &why);
            bad_q = i + 1;
            bad_p = k + 1;
        }
    pg_batch *batch = NULL;
    if (rc == 0) {
        tr_pg_params_fix(params, total, &b);
        batch = tr_malloc(sizeof *batch + sizeof batch->slot[0] * (size_t)n);
    }
    if (rc < 0 || batch == NULL) {
        tr_buf_free(&b);
        if (rc == 0 || rc == TR_ENOMEM)
            return fail_nomem(L);
        return misuse(L, "troupe.pg.batch: query %d, parameter $%d: %s", bad_q, bad_p, why);
    }
    memset(batch, 0, sizeof *batch + sizeof batch->slot[0] * (size_t)n);
    batch->base.ref = tr_lactor_new_ref();
    batch->base.push = batch_push;
    batch->base.free = batch_free;
    batch->rt = tr_ctx_runtime(tr_lactor_ctx(la));
    batch->pid = tr_self(tr_lactor_ctx(la));
    batch->n = n;
    atomic_init(&batch->pending, n + 1);
    at = 0;
    for (int i = 0; i < n; i++) {
        batch_slot *s = &batch->slot[i];
        s->b = batch;
        tr_pg_query q = { 0 };
        q.sql = lua_tolstring(L, qs[i].sql, &q.sql_len);
        q.params = params + at;
        q.nparams = qs[i].n;
        q.timeout_ms = qs[i].timeout_ms;
        at += qs[i].n;
        rc = tr_pg_submit(pg, conn, &q, on_batch_done, s);
        if (rc == 0)
            continue;
        if (i == 0 && rc != TR_ENOMEM) {
            /* Nothing went out: the same misuse as pg.query's. */
            tr_buf_free(&b);
            tr_free(batch);
            return misuse(L, "troupe.pg: not on a worker of the runtime");
        }
        /* Later ones can only run out of memory: this slot fails with that (the
         * others are in flight already). */
        batch_unref(batch);
    }
    tr_buf_free(&b);
    uint64_t ref = batch->base.ref;
    batch_unref(batch);            /* the submitting guard: may complete right here */
    return tr_lactor_wait(L, ref);
}

/* acquire([timeout]) -> tx handle | nil, err */
static int l_acquire(lua_State *L)
{
    tr_lactor *la;
    tr_pg *pg = driver(L, &la);
    int ms = opt_timeout(L, 1, -1);
    pg_wait *w = wait_new(L, la, W_ACQUIRE);
    if (w == NULL)
        return fail_nomem(L);
    int rc = tr_pg_acquire(pg, lua_isnoneornil(L, 1) ? -1 : (ms < 0 ? 0 : ms), on_acquired, w);
    if (rc < 0) {
        tr_free(w);
        if (rc == TR_ENOMEM)
            return fail_nomem(L);
        return misuse(L, "troupe.pg: not on a worker of the runtime");
    }
    return tr_lactor_wait(L, w->base.ref);
}

static int l_release(lua_State *L)
{
    return tx_gc(L);
}

/* error(code, message) -> an error table, for the Lua layer's own failures. */
static int l_error(lua_State *L)
{
    tr_pg_error e;
    memset(&e, 0, sizeof e);
    e.field[TR_PG_E_SEVERITY] = "ERROR";
    e.field[TR_PG_E_CODE] = luaL_checkstring(L, 1);
    e.field[TR_PG_E_MESSAGE] = luaL_checkstring(L, 2);
    tr_pg_push_error(L, &e);
    return 1;
}

/* Whether this state is an HTTP handler VM (unavailable -> 503). */
static int l_in_handler(lua_State *L)
{
    lua_pushboolean(L, tr_http_worker_of(L) != NULL);
    return 1;
}

/* ---- configuration and observation ---- */

static const struct { const char *key; size_t off; int seconds; } cfg_keys[] = {
    { "max", offsetof(tr_pg_config, max), 0 },
    { "min", offsetof(tr_pg_config, min), 0 },
    { "connect_timeout", offsetof(tr_pg_config, connect_timeout_ms), 1 },
    { "acquire_timeout", offsetof(tr_pg_config, acquire_timeout_ms), 1 },
    { "idle_timeout", offsetof(tr_pg_config, idle_timeout_ms), 1 },
    { "max_lifetime", offsetof(tr_pg_config, max_lifetime_ms), 1 },
    { "max_uses", offsetof(tr_pg_config, max_uses), 0 },
    { "statement_timeout", offsetof(tr_pg_config, statement_timeout_ms), 1 },
    { "slow_threshold", offsetof(tr_pg_config, slow_ms), 1 },
    { "pipeline", offsetof(tr_pg_config, pipeline_depth), 0 },
    { "busy_after", offsetof(tr_pg_config, busy_after_ms), 1 },
};
#define NKEYS (sizeof cfg_keys / sizeof *cfg_keys)

/* configure{ url =, max =, ... } -> true; times in seconds. Unknown keys and bad
 * values raise. Applies to every worker's pool (see tr_pg_configure). */
static int l_configure(lua_State *L)
{
    tr_pg *pg = driver(L, NULL);
    luaL_checktype(L, 1, LUA_TTABLE);
    char url[2048];
    tr_pg_config cfg;
    tr_pg_config_current(pg, &cfg, url, sizeof url);
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
        size_t i;
        if (strcmp(k, "url") == 0) {
            cfg.url = luaL_checkstring(L, -1);    /* stays on the stack below */
            lua_pushvalue(L, -1);
            lua_insert(L, 2);
            lua_pop(L, 1);
            continue;
        }
        for (i = 0; i < NKEYS && strcmp(k, cfg_keys[i].key) != 0; i++)
            ;
        if (i == NKEYS)
            return misuse(L, "troupe.pg.configure: unknown setting '%s'", k);
        lua_Number v = luaL_checknumber(L, -1);
        if (isnan(v) || v < 0 || v > 2147483.0 * (cfg_keys[i].seconds ? 1 : 1000))
            return misuse(L, "troupe.pg.configure: bad value for %s", k);
        *(int *)(void *)((char *)&cfg + cfg_keys[i].off) =
            (int)(cfg_keys[i].seconds ? v * 1000 + 0.5 : v);
        lua_pop(L, 1);
    }
    char err[256];
    if (tr_pg_configure(pg, &cfg, err, sizeof err) < 0)
        return misuse(L, "troupe.pg.configure: %s", err);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_config(lua_State *L)
{
    tr_pg *pg = driver(L, NULL);
    char url[2048];
    tr_pg_config cfg;
    tr_pg_config_current(pg, &cfg, url, sizeof url);
    lua_createtable(L, 0, (int)NKEYS + 1);
    if (cfg.url) {
        lua_pushstring(L, cfg.url);
        lua_setfield(L, -2, "url");
    }
    for (size_t i = 0; i < NKEYS; i++) {
        int v = *(int *)(void *)((char *)&cfg + cfg_keys[i].off);
        if (cfg_keys[i].seconds)
            lua_pushnumber(L, v / 1000.0);
        else
            lua_pushinteger(L, v);
        lua_setfield(L, -2, cfg_keys[i].key);
    }
    return 1;
}

static int l_stats(lua_State *L)
{
    tr_pg *pg = driver(L, NULL);
    tr_pg_stats s;
    tr_pg_stats_get(pg, &s);
    lua_createtable(L, 0, 16);
#define F(name) (lua_pushinteger(L, (lua_Integer)s.name), lua_setfield(L, -2, #name))
    F(connections); F(connecting); F(idle); F(pinned); F(inflight); F(waiting);
    F(queries); F(errors); F(prepared); F(connects); F(connect_failures); F(lost);
    F(acquire_timeouts); F(max_inflight); F(pools_down);
#undef F
    return 1;
}

/* slow_queries() -> { { sql =, duration = seconds, params = n, at = epoch s,
 * code = SQLSTATE | nil }, ... } oldest first, at most 100. */
static int l_slow_queries(lua_State *L)
{
    tr_pg *pg = driver(L, NULL);
    tr_pg_slow *s = lua_newuserdatauv(L, sizeof *s * TR_PG_SLOW_MAX, 0);
    int n = tr_pg_slow_queries(pg, s, TR_PG_SLOW_MAX);
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_createtable(L, 0, 5);
        lua_pushstring(L, s[i].sql);
        lua_setfield(L, -2, "sql");
        lua_pushnumber(L, s[i].ms / 1000.0);
        lua_setfield(L, -2, "duration");
        lua_pushinteger(L, s[i].nparams);
        lua_setfield(L, -2, "params");
        lua_pushnumber(L, s[i].at);
        lua_setfield(L, -2, "at");
        if (s[i].code[0]) {
            lua_pushstring(L, s[i].code);
            lua_setfield(L, -2, "code");
        }
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

/* ---- the Lua layer ---- */

static const char lua_layer[] =
    "local C = ...\n"
    "local running, pcall, error, select, type, setmetatable, unpack =\n"
    "  coroutine.running, pcall, error, select, type, setmetatable, table.unpack\n"
    "local pg = { null = C.null }\n"
    "local active = setmetatable({}, { __mode = 'k' })  -- coroutine -> its transaction\n"
    "\n"
    "local function result(res, err)\n"
    "  if err ~= nil and err.unavailable and C.in_handler() then\n"
    "    error(require('troupe.errors').new(503, 'Service Unavailable: database unavailable'), 0)\n"
    "  end\n"
    "  return res, err\n"
    "end\n"
    "local function pack(...) return { n = select('#', ...), ... } end\n"
    "\n"
    "local Tx = {}\n"
    "Tx.__index = Tx\n"
    "Tx.__name = 'troupe.pg.transaction'\n"
    "local function tx_query(tx, q, ...)\n"
    "  if tx.done then error('troupe.pg: this transaction is over', 3) end\n"
    "  local res, err = q(tx.h, ...)\n"
    "  if err ~= nil and tx.failed == nil then tx.failed = err end\n"
    "  return result(res, err)\n"
    "end\n"
    "function Tx:query(...) return tx_query(self, C.query, ...) end\n"
    "function Tx:query_one(...) return tx_query(self, C.query_one, ...) end\n"
    "function Tx:batch(list) return tx_query(self, C.batch, list) end\n"
    "\n"
    "local function returns(r)\n"
    "  if r.n == 1 then return true end\n"
    "  return unpack(r, 2, r.n)\n"
    "end\n"
    "\n"
    "-- A nested transaction: a savepoint, released on return, rolled back to on error.\n"
    "function Tx:transaction(fn, ...)\n"
    "  if type(fn) == 'table' then return self:transaction(...) end  -- no options for a savepoint\n"
    "  if type(fn) ~= 'function' then error('troupe.pg.transaction: a function expected', 2) end\n"
    "  local sp = 'troupe_sp_' .. (self.depth + 1)\n"
    "  local ok, err = tx_query(self, C.query, 'SAVEPOINT ' .. sp)\n"
    "  if not ok then return nil, err end\n"
    "  self.depth = self.depth + 1\n"
    "  local r = pack(pcall(fn, self, ...))\n"
    "  self.depth = self.depth - 1\n"
    "  if r[1] and self.failed == nil then\n"
    "    local rel, rerr = C.query(self.h, 'RELEASE SAVEPOINT ' .. sp)\n"
    "    if rel then return returns(r) end\n"
    "    self.failed = rerr\n"
    "  end\n"
    "  local failure = self.failed\n"
    "  if C.query(self.h, 'ROLLBACK TO SAVEPOINT ' .. sp) then self.failed = nil end\n"
    "  if not r[1] then error(r[2], 0) end\n"
    "  return result(nil, failure)\n"
    "end\n"
    "\n"
    "local levels = { ['serializable'] = 'SERIALIZABLE', ['repeatable read'] = 'REPEATABLE READ',\n"
    "  ['read committed'] = 'READ COMMITTED', ['read uncommitted'] = 'READ UNCOMMITTED' }\n"
    "local function begin_sql(o)\n"
    "  local s = 'BEGIN'\n"
    "  if o.isolation ~= nil then\n"
    "    local l = levels[type(o.isolation) == 'string' and o.isolation:lower() or '']\n"
    "    if not l then error('troupe.pg.transaction: unknown isolation level ' .. tostring(o.isolation), 4) end\n"
    "    s = s .. ' ISOLATION LEVEL ' .. l\n"
    "  end\n"
    "  if o.read_only then s = s .. ' READ ONLY' end\n"
    "  if o.deferrable then s = s .. ' DEFERRABLE' end\n"
    "  return s\n"
    "end\n"
    "\n"
    "local function transaction(opts, fn, ...)\n"
    "  if type(fn) ~= 'function' then error('troupe.pg.transaction: a function expected', 3) end\n"
    "  local co = running()\n"
    "  local outer = active[co]\n"
    "  if outer then return outer:transaction(fn, ...) end\n"
    "  local begin = opts and begin_sql(opts) or 'BEGIN'\n"
    "  local h, err = C.acquire(opts and opts.timeout)\n"
    "  if not h then return result(nil, err) end\n"
    "  local ok, berr = C.query(h, begin)\n"
    "  if not ok then C.release(h); return result(nil, berr) end\n"
    "  local tx = setmetatable({ h = h, depth = 0 }, Tx)\n"
    "  active[co] = tx\n"
    "  local r = pack(pcall(fn, tx, ...))\n"
    "  active[co] = nil\n"
    "  if r[1] and tx.failed == nil then\n"
    "    local c, cerr = C.query(h, 'COMMIT')\n"
    "    tx.done = true\n"
    "    C.release(h)\n"
    "    if c and c.command == 'COMMIT' then return returns(r) end\n"
    "    return result(nil, cerr or C.error('40000', 'the transaction was rolled back'))\n"
    "  end\n"
    "  local failure = tx.failed\n"
    "  tx.done = true\n"
    "  C.query(h, 'ROLLBACK')\n"
    "  C.release(h)\n"
    "  if not r[1] then error(r[2], 0) end\n"
    "  return result(nil, failure)\n"
    "end\n"
    "\n"
    "function pg.transaction(opts, ...)\n"
    "  if type(opts) == 'function' then return transaction(nil, opts, ...) end\n"
    "  if type(opts) ~= 'table' then error('troupe.pg.transaction: a function expected', 2) end\n"
    "  return transaction(opts, ...)\n"
    "end\n"
    "\n"
    "function pg.query(...)\n"
    "  local tx = active[running()]\n"
    "  if tx then return tx_query(tx, C.query, ...) end\n"
    "  return result(C.query(nil, ...))\n"
    "end\n"
    "function pg.query_one(...)\n"
    "  local tx = active[running()]\n"
    "  if tx then return tx_query(tx, C.query_one, ...) end\n"
    "  return result(C.query_one(nil, ...))\n"
    "end\n"
    "function pg.batch(list)\n"
    "  local tx = active[running()]\n"
    "  if tx then return tx_query(tx, C.batch, list) end\n"
    "  return result(C.batch(nil, list))\n"
    "end\n"
    "pg.configure, pg.config, pg.stats, pg.slow_queries =\n"
    "  C.configure, C.config, C.stats, C.slow_queries\n"
    "return pg\n";

static const luaL_Reg raw_funcs[] = {
    { "query", l_query },               { "query_one", l_query_one },
    { "batch", l_batch },
    { "acquire", l_acquire },           { "release", l_release },
    { "error", l_error },               { "in_handler", l_in_handler },
    { "configure", l_configure },       { "config", l_config },
    { "stats", l_stats },               { "slow_queries", l_slow_queries },
    { NULL, NULL }
};

int luaopen_troupe_pg(lua_State *L)
{
    if (luaL_loadbufferx(L, lua_layer, sizeof lua_layer - 1, "=troupe.pg", "t") != LUA_OK)
        return lua_error(L);
    luaL_newlib(L, raw_funcs);
    tr_json_pushnull(L);
    lua_setfield(L, -2, "null");
    lua_call(L, 1, 1);
    return 1;
}
