/* redis_int.h — what redis.c (configuration, connections, commands) and redis_sub.c
 * (pub/sub) share. Not installed; not for bindings. */
#ifndef TR_STORE_REDIS_INT_H
#define TR_STORE_REDIS_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include <uv.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>

#include "redis.h"

typedef struct tr__rconn tr__rconn;
typedef struct tr__rop   tr__rop;
typedef struct tr__rsub  tr__rsub;

/* Where to connect: parsed from a URL, owned by whoever holds it. */
typedef struct tr__rcfg {
    char *host, *user, *pass;
    int   port, db;
} tr__rcfg;

/* The per-runtime state (slot TR_EXT_REDIS). */
typedef struct tr_redis {
    tr_runtime      *rt;
    int              nworkers;
    pthread_mutex_t  lock;        /* cfg, and spawning the subscriber actor */
    tr__rcfg         cfg;
    _Atomic unsigned gen;         /* bumped by each tr_redis_configure that sets a URL */
    _Atomic int      timeout_ms;  /* default command timeout */
    tr__rconn      **conns;       /* [nworkers]: conns[i] is created and used by worker i */
    _Atomic tr_pid   sub_pid;     /* the pub/sub actor (redis_sub.c), pinned to worker 0 */
    tr__rsub        *sub;         /* its state: worker 0's thread only */
    int              closing;     /* set by the free function: deliver nothing any more */
    _Atomic int      resolving;   /* name lookups in flight, over every worker */
} tr_redis;

enum { TR__RC_CONNECTING = 1, TR__RC_UP, TR__RC_DOWN };

/* A connection that reconnects by itself. Touched by its loop's thread only. */
struct tr__rconn {
    tr_redis          *r;
    uv_loop_t         *loop;
    redisAsyncContext *ac;          /* NULL while down */
    int                state;
    int                failed;      /* down since the last time it was up: fail fast */
    int                setup_left;  /* AUTH/SELECT replies still awaited */
    unsigned           gen;         /* the configuration it connects with */
    tr__rcfg           cfg;
    unsigned           backoff_ms;
    uv_timer_t         retry;       /* reconnect after the backoff; connect timeout */
    uv_timer_t         tmo;         /* the earliest deadline of a command in flight */
    uint64_t           tmo_at;      /* when tmo fires (0: not armed) */
    tr__rop           *head, *tail; /* commands in flight, by deadline */
    uint32_t           inflight;
    char               why[192];    /* the last failure, for error messages */
    /* The subscriber connection's hooks (NULL for command connections): up after
     * AUTH/SELECT succeeded; down when it is lost or could not connect. */
    void             (*on_up)(tr__rconn *c);
    void             (*on_down)(tr__rconn *c);
    void              *owner;
    int                closed;      /* handles closed (and the lookup done), while closing */
    int                close_expect; /* what closed counts to before c is freed */
    int                resolving;   /* gai in flight (the host is a name) */
    unsigned           resolve_gen; /* the configuration it looks up */
    uv_getaddrinfo_t   gai;
    tr__rop           *pend_head;   /* commands submitted while resolving, in order */
    tr__rop          **pend_tail;
};

tr_redis *tr__redis_get(tr_runtime *rt);

/* Parses redis://[[user]:password@]host[:port][/db] into *cfg (the caller owns it on
 * success). 0, TR_EINVAL (err says why) or TR_ENOMEM. */
int tr__redis_parse_url(const char *url, tr__rcfg *cfg, char *err, size_t errlen);
void tr__rcfg_free(tr__rcfg *cfg);

/* Allocates a connection on loop and starts connecting. NULL on out of memory. */
tr__rconn *tr__rconn_new(tr_redis *r, uv_loop_t *loop);
/* Reconnects at once when tr_redis_configure changed the URL since it connected. */
void tr__rconn_refresh(tr__rconn *c);
/* Closes everything (pending commands fail) and frees c once the loop ran its close
 * callbacks: the caller runs the loop afterwards. */
void tr__rconn_close(tr__rconn *c);
/* The error message of a down connection: "redis: not connected (why); retrying". */
void tr__rconn_err(const tr__rconn *c, char *err, size_t errlen);

/* The commands submitted while the host name was looked up (redis.c): sent once the
 * connection exists, or failed with why when it could not be made. */
void tr__redis_send_pending(tr__rconn *c);
void tr__redis_fail_pending(tr__rconn *c, const char *why);

/* A result with no reply: status and the message msg (status 0: a confirmation).
 * NULL on out of memory. */
tr_redis_result *tr__redis_error_result(int status, const char *msg, const uint64_t user[2]);
/* A pub/sub message for a hook: count 2, the channel then the message. */
tr_redis_result *tr__redis_msg_result(const char *ch, size_t chlen, const char *msg,
                                      size_t msglen, const char *pat, size_t patlen,
                                      const uint64_t user[2]);

/* Pub/sub (redis_sub.c): frees the subscriber's state (runtime free, no thread runs). */
void tr__redis_sub_free(tr_redis *r);
/* Pub/sub: makes the subscriber reconnect now when the URL changed. */
void tr__redis_sub_poke(tr_runtime *rt);

#endif
