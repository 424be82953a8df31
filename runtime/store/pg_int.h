/* pg_int.h — what the pool (pg.c) and the connections (pg_conn.c) share. */
#ifndef TR_STORE_PG_INT_H
#define TR_STORE_PG_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include <uv.h>

#include "pg.h"

/* ---- sync segments: what one connection has in flight ---- */

/* The protocol commands of one segment, in order; a segment ends with a Sync. */
enum { CMD_PARSE, CMD_DESCRIBE, CMD_SET_TIMEOUT, CMD_MAIN, CMD_RESET_TIMEOUT };
#define PG_SEG_MAX 5

typedef struct pg_op   pg_op;
typedef struct pg_stmt pg_stmt;
typedef struct pg_pool pg_pool;

typedef struct pg_seg pg_seg;
struct pg_seg {
    pg_seg  *next;
    pg_op   *op;          /* the query it runs (NULL: a prepare on its own) */
    pg_stmt *stmt;        /* the statement it prepares (NULL: none) */
    uint8_t  ncmds, cur;
    uint8_t  cmd[PG_SEG_MAX];
    uint8_t  err_cmd;     /* the command that failed first */
    uint8_t  nulls;       /* stray NULL results (a protocol confusion guard) */
    tr_pg_error *err;     /* the first error of the segment */
};

/* A statement prepared (or being prepared) on one connection. */
struct pg_stmt {
    pg_stmt  *next;       /* hash chain */
    uint32_t  hash;
    uint8_t   ready;      /* prepared, and its parameter types known */
    uint8_t   failed;
    int       nparams;
    Oid      *types;      /* nparams types, once described */
    pg_op    *wait_head, *wait_tail;  /* queries waiting for the types */
    pg_seg    seg;        /* the prepare, when it runs on its own */
    char      name[16];
    size_t    sql_len;
    char      sql[];
};

enum { OP_QUERY, OP_ACQUIRE, OP_RELEASE };

/* A query, an acquire, or (posted across threads) a release. One allocation with
 * the SQL text and the parameters copied behind it. */
struct pg_op {
    pg_op          *next, *prev;   /* wait queue, statement waiters, post queue, done list */
    uint8_t         kind;
    uint8_t         queued;        /* in the pool's wait queue */
    uint8_t         needs_types;   /* a BYTES or TABLE parameter: wait for the types */
    uint8_t         internal;      /* the driver's own ROLLBACK before a release */
    tr_pg_conn     *conn;          /* where it runs (pinned), or NULL: the pool picks */
    tr_pg_done      done;
    tr_pg_acquired  acquired;
    void           *arg;
    uint64_t        t0_ns;         /* submission (uv_hrtime) */
    uint64_t        deadline;      /* uv_now ms: acquire timeout */
    int             timeout_ms;
    PGresult       *res;
    tr_pg_error    *err;
    pg_seg          seg;
    uint32_t        hash;
    int             nparams;
    tr_pg_param    *params;
    size_t          sql_len;
    char           *sql;
    char            blob[];
};

/* ---- connections ---- */

enum { CONN_CONNECTING, CONN_READY, CONN_BROKEN };
#define PG_STMT_BUCKETS 64
#define PG_STMT_MAX 256      /* more distinct statements run unprepared */

struct tr_pg_conn {
    tr_pg_conn *next, *prev;    /* the pool's list */
    pg_pool    *pool;
    PGconn     *pq;
    uv_poll_t  *poll;           /* on PQsocket; replaced when libpq changes sockets */
    int         fd, events;
    uv_timer_t  timer;          /* connect timeout */
    uint8_t     state;
    uint8_t     pinned, draining, retiring, release_pending, flushing, closed;
    uint8_t     rollback_sent, counted_idle, zombie;
    uint8_t     corked, nocork; /* TCP_CORK set until the loop polls; not a TCP socket */
    uint8_t     resolving;      /* gai in flight: its host name, before libpq starts */
    uv_getaddrinfo_t gai;       /* counted in handles until its callback */
    int         handles;        /* open uv handles; freed when the last one closes */
    int         load;           /* queries assigned and not finished */
    pg_seg     *seg_head, *seg_tail;
    uint64_t    created, idle_since, uses;
    unsigned    gen;            /* the pool's connection generation it was opened at */
    int         stmt_timeout_ms;
    unsigned    stmt_seq;
    int         nstmts;
    pg_stmt    *stmts[PG_STMT_BUCKETS];
};

/* ---- pools: one per worker ---- */

typedef struct pg_counters {
    _Atomic uint64_t connections, connecting, idle, pinned, inflight, waiting;
    _Atomic uint64_t queries, errors, prepared, connects, connect_failures, lost,
                     acquire_timeouts, max_inflight, down;
} pg_counters;

struct pg_pool {
    tr_pg        *pg;
    int           worker;
    uv_loop_t    *loop;
    tr_pg_config  cfg;           /* a copy; cfg.url points to url */
    char         *url;
    const char  **kw, **val;     /* conninfo for PQconnectStartParams */
    char         *kwbuf;
    const char   *resolve_host;  /* the url's host name, resolved off the loop thread
                                    (libpq would block in getaddrinfo); NULL: none */
    int           resolving;     /* connections whose name lookup is in flight */
    unsigned      cfg_gen;       /* the driver's generation this copy is from */
    unsigned      conn_gen;      /* bumped when url or session settings change */
    tr_pg_conn   *conns;         /* connecting and ready ones */
    tr_pg_conn   *zombies;       /* closed while pinned: freed on release */
    int           nconns, nconnecting, nready;
    uint64_t      next_connect_at;  /* uv_now ms: no new attempt before (backoff) */
    uint64_t      wait_due;      /* when wait_timer fires; 0: not armed */
    int           dispatching, redispatch;
    pg_op        *wait_head, *wait_tail;
    int           nwait, nwait_acq;
    int           down;
    char          down_msg[256];
    char          cfg_err[200];  /* why the url cannot be used */
    uint32_t      backoff_ms;
    uint64_t      rng;
    int           retry_armed;
    uv_timer_t    wait_timer, maint_timer, retry_timer;
    uv_async_t    async;
    uv_prepare_t  uncork;        /* before the loop polls: corked sockets send */
    int           uncork_armed;
    pthread_mutex_t post_lock;
    pg_op        *post_head, *post_tail;
    int           depth;         /* nesting of entry points; callbacks run at 0 */
    pg_op        *done_head, *done_tail;
    int           closing;
    pg_counters   n;
};

struct tr_pg {
    tr_runtime      *rt;
    int              nworkers;
    _Atomic(pg_pool *) *pools;  /* created by each worker on first use */
    pthread_mutex_t  lock;       /* cfg, url, slow log */
    tr_pg_config     cfg;
    char            *url;
    _Atomic unsigned cfg_gen;
    tr_pg_slow       slow[TR_PG_SLOW_MAX];
    int              slow_next, slow_n;
    _Atomic int      slow_ms;
    int              closing;
};

/* ---- pg.c, for pg_conn.c ---- */

void tr__pg_enter(pg_pool *p);
void tr__pg_leave(pg_pool *p);
/* Queues op's callback for the outermost tr__pg_leave (res/err already set). */
void tr__pg_finish(pg_pool *p, pg_op *op);
/* A connection became ready, broke, freed capacity, or changed state. */
void tr__pg_conn_ready(pg_pool *p, tr_pg_conn *c);
/* c broke (was_ready) or could not connect: closes it with why (borrowed). */
void tr__pg_conn_failed(pg_pool *p, tr_pg_conn *c, const tr_pg_error *why, int was_ready);
void tr__pg_capacity(pg_pool *p, tr_pg_conn *c);
/* c's last uv handle closed (c is closed). */
void tr__pg_conn_gone(pg_pool *p, tr_pg_conn *c);
/* Keeps the pool's idle counter in step with c. */
void tr__pg_conn_update_idle(tr_pg_conn *c);
tr_pg_error *tr__pg_error_new(const char *code, int unavailable, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline void tr__pg_count(_Atomic uint64_t *c, int64_t d)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + (uint64_t)d,
                          memory_order_relaxed);
}

/* ---- pg.c, for the others ---- */

char  *tr__pg_strdup(const char *s);
pg_op *tr__pg_op_alloc(int kind, size_t extra);
pg_op *tr__pg_op_new(const tr_pg_query *q);
void   tr__pg_op_free(pg_op *op);
/* Builds p->kw/p->val from p->url and p->cfg (p->cfg_err says why when it cannot):
 * the url's settings, plus ISO dates, hex bytea, UTF-8, keepalives and the
 * statement timeout, added to the user's own `options`. */
void   tr__pg_conninfo(pg_pool *p);

/* ---- pg_pool.c, for pg.c ---- */

/* The calling worker's pool, made on first use; NULL off a worker or closing. */
pg_pool *tr__pg_pool_here(tr_pg *pg);
void tr__pg_pool_free(pg_pool *p);
/* Takes the driver's configuration if it changed. */
void tr__pg_pool_refresh(pg_pool *p);
void tr__pg_pool_query(pg_pool *p, pg_op *op);
void tr__pg_pool_acquire(pg_pool *p, pg_op *op, int timeout_ms);
/* Runs op (a query on its pinned connection, or a release) on the pool's worker. */
void tr__pg_post(pg_pool *p, pg_op *op);
/* Has the corked sockets of p (tr__pg_conn_send) send before the loop next polls. */
void tr__pg_pool_arm_uncork(pg_pool *p);

/* ---- pg_conn.c, for the pool ---- */

/* A new connection, not yet linked (NULL with *err set when libpq refuses at once);
 * the pool links it, then tr__pg_conn_start starts the handshake, and the pool hears
 * back through tr__pg_conn_ready or tr__pg_conn_failed. */
tr_pg_conn *tr__pg_conn_open(pg_pool *p, tr_pg_error **err);
void tr__pg_conn_start(tr_pg_conn *c);
/* pg_conn.c, for pg_resolve.c: libpq started on kw/val (NULL with *err), the socket
 * watched, an attempt that failed. */
PGconn *tr__pg_pq_start(const char *const *kw, const char *const *val, tr_pg_error **err);
int  tr__pg_conn_watch(tr_pg_conn *c, int events, int renew);
void tr__pg_connect_failed(tr_pg_conn *c, const char *why);
/* pg_resolve.c: looks p->resolve_host up on libuv's thread pool, then starts libpq
 * with the addresses found (or fails the attempt). */
void tr__pg_lookup(tr_pg_conn *c);
/* Sends op on c (ready, not over its depth); takes op. */
void tr__pg_conn_send(tr_pg_conn *c, pg_op *op);
/* Fails what c has in flight with err's copies, closes the socket and its handles;
 * the struct is freed once the handles are closed, unless it is pinned. */
void tr__pg_conn_close(tr_pg_conn *c, const tr_pg_error *why);
tr_pg_error *tr__pg_error_copy(const tr_pg_error *e);

#endif
