/* pg.h — the Postgres driver (runtime/store): a libpq connection pool per worker.
 *
 * Each worker owns a pool whose connections live on that worker's uv loop (a uv_poll
 * on the libpq socket, non-blocking, always in pipeline mode): a query submitted on a
 * worker goes to that worker's pool and its completion runs on that worker, so the
 * hot path takes no lock. Independent queries share a connection in flight (up to
 * `pipeline_depth` each); every query is its own sync segment, so one failing query
 * never aborts another. The queries sent on a connection during one loop iteration
 * leave together (the socket is corked until the loop polls). A query goes to the
 * first connection that is neither full nor busy (`busy_after_ms`); the pool grows
 * only when every one is. Statements are prepared once per connection, keyed by their
 * SQL text; parameters always travel apart from the text.
 *
 * A transaction pins one connection (tr_pg_acquire ... tr_pg_release); queries on a
 * pinned connection may be submitted from any thread (they reach its worker through
 * a queue and a uv_async, off the hot path).
 *
 * Failure: a connection lost fails its queries at once ("08006", or the server's own
 * code such as 57P01 on shutdown); the pool reconnects in the background with
 * exponential backoff and jitter, and while it cannot connect at all new queries
 * fail fast ("08001") instead of piling up. A pinned connection is returned to the
 * pool only clean (no result pending, no transaction open: ROLLBACK first, or it is
 * closed).
 *
 * Lua-free: bindings/pg.c turns this into troupe.pg.
 */
#ifndef TR_STORE_PG_H
#define TR_STORE_PG_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "troupe.h"

typedef struct tr_pg      tr_pg;        /* the runtime's driver (one per runtime) */
typedef struct tr_pg_conn tr_pg_conn;   /* a connection, as pinned by tr_pg_acquire */

/* ---- configuration -------------------------------------------------------------- */

typedef struct tr_pg_config {
    const char *url;            /* libpq URL or key=value string; NULL or "": libpq's
                                   defaults (PGHOST, ...) */
    int max;                    /* connections per worker (default 8) */
    int min;                    /* kept open per worker once it has used the pool (0) */
    int connect_timeout_ms;     /* one connection attempt (5000) */
    int acquire_timeout_ms;     /* waiting for a connection or a pipeline slot (5000) */
    int idle_timeout_ms;        /* an idle connection above min is closed (10000; 0 never) */
    int max_lifetime_ms;        /* a connection older is retired when idle (0: never) */
    int max_uses;               /* queries before a connection is retired (0: no limit) */
    int statement_timeout_ms;   /* server-side statement_timeout of the sessions (0: none) */
    int slow_ms;                /* queries at least this slow go to the slow log (1000) */
    int pipeline_depth;         /* queries in flight per connection (64) */
    int busy_after_ms;          /* a connection whose oldest query in flight is this old
                                   is busy: new queries go to the first connection that
                                   is not, and the pool grows (up to max) only when
                                   every one is busy or full (10; 0: busy as soon as it
                                   has a query in flight, the classic one-query pool) */
} tr_pg_config;

/* Fills cfg with the defaults (url NULL). */
void tr_pg_config_init(tr_pg_config *cfg);

/* Overrides cfg from the environment: TROUPE_PG_URL, TROUPE_PG_POOL_MAX,
 * TROUPE_PG_POOL_MIN, TROUPE_PG_CONNECT_TIMEOUT_MS, TROUPE_PG_ACQUIRE_TIMEOUT_MS,
 * TROUPE_PG_IDLE_TIMEOUT_MS, TROUPE_PG_MAX_LIFETIME_MS, TROUPE_PG_MAX_USES,
 * TROUPE_PG_STATEMENT_TIMEOUT_MS, TROUPE_PG_SLOW_MS, TROUPE_PG_PIPELINE,
 * TROUPE_PG_BUSY_AFTER_MS. cfg->url
 * then borrows the environment's string. Unparsable numbers are ignored. */
void tr_pg_config_env(tr_pg_config *cfg);

/* ---- the driver ------------------------------------------------------------------- */

/* The runtime's driver, created on first use with tr_pg_config_init +
 * tr_pg_config_env (thread-safe: concurrent first calls get the same one). It lives
 * until tr_runtime_free, which fails what is still pending and closes every
 * connection. 0, or TR_ENOMEM. */
int tr_pg_get(tr_runtime *rt, tr_pg **out);

/* Replaces the configuration (copied). Limits and timeouts apply at once; a new url
 * or statement timeout applies to connections opened from now on (the others are
 * retired as soon as they are idle). 0, or TR_EINVAL with err filled (a url libpq
 * cannot parse, a negative value, max < 1, min > max), TR_ENOMEM. Any thread. */
int tr_pg_configure(tr_pg *pg, const tr_pg_config *cfg, char *err, size_t errlen);

/* Copies the current configuration into *out; out->url points into url (urlcap
 * bytes, truncated), or is NULL when none is set. Any thread. */
void tr_pg_config_current(tr_pg *pg, tr_pg_config *out, char *url, size_t urlcap);

/* ---- errors ----------------------------------------------------------------------- */

enum {
    TR_PG_E_SEVERITY, TR_PG_E_CODE, TR_PG_E_MESSAGE, TR_PG_E_DETAIL, TR_PG_E_HINT,
    TR_PG_E_POSITION, TR_PG_E_WHERE, TR_PG_E_SCHEMA, TR_PG_E_TABLE, TR_PG_E_COLUMN,
    TR_PG_E_DATATYPE, TR_PG_E_CONSTRAINT, TR_PG_E_NFIELDS
};

/* Field names, in the order above ("severity", "code", "message", ...). */
extern const char *const tr_pg_error_names[TR_PG_E_NFIELDS];

/*
 * A failed query, one allocation. code is always set: the server's SQLSTATE, or for
 * what happened on the client side: "08001" cannot connect (also while the pool is
 * down), "08006" connection lost, "08000" no connection within the acquire timeout,
 * "22021" a text parameter with a zero byte, "08P01" an unexpected protocol state,
 * "53200" out of memory. unavailable is set when the database cannot be reached or
 * is going away (class 08, 57P01-57P03, 53300): what an HTTP handler turns into 503.
 */
typedef struct tr_pg_error {
    int         unavailable;
    const char *field[TR_PG_E_NFIELDS];     /* NULL when absent */
} tr_pg_error;

void tr_pg_error_free(tr_pg_error *err);

/* ---- queries ---------------------------------------------------------------------- */

enum {
    TR_PG_PARAM_NULL,   /* SQL NULL */
    TR_PG_PARAM_TEXT,   /* text the server parses (numbers, booleans) */
    TR_PG_PARAM_BYTES,  /* a string: raw bytes for a bytea parameter, text otherwise */
    TR_PG_PARAM_TABLE   /* data: an array literal ("{1,2}") or NULL; json: JSON text or
                           NULL; a json/jsonb parameter takes the JSON */
};

typedef struct tr_pg_param {
    int         kind;
    const char *data;
    size_t      len;
    const char *json;
    size_t      json_len;
} tr_pg_param;

typedef struct tr_pg_query {
    const char        *sql;
    size_t             sql_len;
    const tr_pg_param *params;
    int                nparams;      /* 0 .. 65535 */
    int                timeout_ms;   /* this query's statement timeout: 0 the session's,
                                        < 0 none, > 0 that many ms (server-side) */
} tr_pg_query;

/* A query's end: res (TUPLES_OK or COMMAND_OK, text format) or err, which the callee
 * owns (PQclear / tr_pg_error_free); both NULL when even the error could not be
 * allocated (out of memory). Runs on the worker of the connection, or inside
 * tr_pg_submit itself when the query fails before it is sent (pool down, bad
 * parameter), or at tr_runtime_free (err). */
typedef void (*tr_pg_done)(void *arg, PGresult *res, tr_pg_error *err);

/*
 * Submits a query; everything in q is copied. With conn NULL it goes to the pool of
 * the worker running the calling thread (TR_ESTATE elsewhere); with conn (pinned by
 * tr_pg_acquire, not yet released) it runs on that connection, from any thread, in
 * submission order. Returns 0 (done will be called once), or (done is not called)
 * TR_EINVAL: more than 65535 parameters, a zero byte in the SQL, or transaction
 * control (BEGIN, COMMIT, ROLLBACK, SAVEPOINT, ...) on a pooled connection, where it
 * would take the queries of others along; TR_ESTATE, TR_ENOMEM.
 */
int tr_pg_submit(tr_pg *pg, tr_pg_conn *conn, const tr_pg_query *q, tr_pg_done done,
                 void *arg);

/* Whether sql's first keyword (past spaces and comments) controls a transaction
 * (BEGIN, START, COMMIT, END, ROLLBACK, ABORT, SAVEPOINT, RELEASE): what tr_pg_submit
 * refuses on a pooled connection. */
int tr_pg_tx_control(const char *sql, size_t n);

/* A connection for a transaction: exclusive until tr_pg_release. conn, or err (owned
 * by the callee; both NULL: out of memory). Same threads as tr_pg_done. */
typedef void (*tr_pg_acquired)(void *arg, tr_pg_conn *conn, tr_pg_error *err);

/* Pins a connection of the calling worker's pool, waiting up to timeout_ms (< 0: the
 * configured acquire timeout) in the pool's FIFO queue. 0 (cb will be called) or
 * TR_ESTATE, TR_ENOMEM. */
int tr_pg_acquire(tr_pg *pg, int timeout_ms, tr_pg_acquired cb, void *arg);

/* Gives a pinned connection back (any thread; conn must not be used afterwards).
 * Queries still in flight on it finish first; an open transaction is rolled back; a
 * connection that is broken, or not idle after the rollback, is closed instead. */
void tr_pg_release(tr_pg_conn *conn);

/* ---- observation -------------------------------------------------------------------- */

typedef struct tr_pg_stats {
    uint64_t connections;      /* open (ready) connections, all workers */
    uint64_t connecting;
    uint64_t idle;             /* ready, unpinned, nothing in flight */
    uint64_t pinned;           /* held by transactions */
    uint64_t inflight;         /* queries sent and not yet answered */
    uint64_t waiting;          /* queries and acquires in the wait queues */
    uint64_t queries;          /* completed, since the start */
    uint64_t errors;           /* of which failed */
    uint64_t prepared;         /* statements prepared (Parse sent) */
    uint64_t connects;         /* connections established */
    uint64_t connect_failures;
    uint64_t lost;             /* connections broken under use */
    uint64_t acquire_timeouts;
    uint64_t max_inflight;     /* the deepest pipeline seen on one connection */
    uint64_t pools_down;       /* worker pools that cannot connect right now */
} tr_pg_stats;

/* Sums the counters of every worker's pool. Any thread. */
void tr_pg_stats_get(tr_pg *pg, tr_pg_stats *out);

#define TR_PG_SLOW_MAX 100
#define TR_PG_SLOW_SQL 512

/* A query that took at least slow_ms, from submission to result. */
typedef struct tr_pg_slow {
    char     sql[TR_PG_SLOW_SQL];  /* truncated */
    double   ms;
    int      nparams;
    double   at;                   /* wall clock, seconds since the epoch */
    char     code[6];              /* "" when it succeeded, else its SQLSTATE */
} tr_pg_slow;

/* Copies the slow log (the last TR_PG_SLOW_MAX, oldest first) into out (room for
 * max); returns how many. Any thread. */
int tr_pg_slow_queries(tr_pg *pg, tr_pg_slow *out, int max);

#endif
