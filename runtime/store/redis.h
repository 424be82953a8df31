/* redis.h — the Redis client of the runtime (runtime/store), on hiredis's async API.
 *
 * One command connection per worker, opened on first use by that worker's thread and
 * touched by no other: the commands of every coroutine running on the worker go down
 * it back to back (pipelined), and hiredis's libuv adapter reads the replies on the
 * worker's loop. One more connection, on worker 0, carries pub/sub. Both reconnect
 * with backoff (50 ms doubling to 2 s, with jitter); while a connection is down,
 * commands fail at once (there is no offline queue). AUTH and SELECT come from the
 * URL and are sent first on every connection.
 *
 * Lua-free: bindings/redis.c turns results into Lua values. Everything here may be
 * called from any thread of the runtime unless its contract says otherwise.
 */
#ifndef TR_STORE_REDIS_H
#define TR_STORE_REDIS_H

#include <stddef.h>
#include <stdint.h>

#include "troupe.h"

typedef struct tr_redis_result tr_redis_result;

/*
 * The outcome of a request. status 0: `count` replies in data[0..len), in the flat
 * encoding read by tr_redis_read. status < 0: err says why (a NUL-terminated message
 * such as "redis: timed out after 100 ms") and there is no reply:
 *   TR_ESTATE     not connected (the connection is down or was lost under the request)
 *   TR_ETIMEDOUT  no reply within the timeout (a late reply is dropped)
 *   TR_EOVERLOAD  too many requests in flight on the connection
 *   TR_ENOMEM, TR_ESTOPPED
 * The completion hook owns the result and frees it with tr_redis_result_free.
 */
struct tr_redis_result {
    void       *head[3];   /* the hook's: a binding keeps its completion header here,
                              at the result's own address (no extra allocation) */
    uint64_t    user[2];   /* copied from the request */
    int         status;
    uint32_t    count;
    const char *err;
    const char *data;
    size_t      len;
};

void tr_redis_result_free(tr_redis_result *res);

/* ---- the flat reply encoding ---- */

typedef enum {
    TR_REDIS_NIL = 0,
    TR_REDIS_INT,       /* integer */
    TR_REDIS_STR,       /* bulk string (binary-safe) */
    TR_REDIS_STATUS,    /* status reply, e.g. "OK" */
    TR_REDIS_ERR,       /* error reply, e.g. "ERR unknown command" */
    TR_REDIS_ARRAY      /* n elements follow */
} tr_redis_type;

typedef struct tr_redis_item {
    tr_redis_type type;
    int64_t       integer;   /* TR_REDIS_INT */
    const char   *str;       /* STR, STATUS, ERR: str[0..len), borrowed from the result */
    size_t        len;       /* ARRAY: the element count */
} tr_redis_item;

/* Reads the item at *pos of data[0..len) and advances *pos past its header (an
 * array's elements follow it, item after item). 0, or -1 at the end or on bad data. */
int tr_redis_read(const char *data, size_t len, size_t *pos, tr_redis_item *item);

/* ---- commands ---- */

typedef struct tr_redis_req {
    int            ncmds;      /* commands, >= 1 */
    const int     *argc;       /* arguments of each command (the command name included) */
    const char   **argv;       /* every argument, command after command (borrowed: copied
                                  into the output buffer before tr_redis_submit returns) */
    const size_t  *argvlen;    /* their lengths (binary-safe); NULL: NUL-terminated */
    int            multi;      /* wrap the commands in MULTI ... EXEC: the result is EXEC's
                                  reply (count 1), or an EXECABORT error naming the first
                                  command refused */
    int            timeout_ms; /* 0: the configured default (TROUPE_REDIS_TIMEOUT_MS) */
    /* Called once with the result, later, on the submitting worker's thread (never
     * from inside tr_redis_submit). It owns the result. For tr_redis_subscribe's
     * confirmation: on worker 0's thread. */
    void         (*done)(tr_runtime *rt, tr_redis_result *res);
    uint64_t       user[2];
} tr_redis_req;

/*
 * Sends req's commands, contiguously, on the calling worker's command connection
 * (opened on first use). Returns 0: done will be called later. Or fails at once and
 * done is not called: TR_EINVAL (a command that would break the shared connection:
 * SUBSCRIBE, MULTI, SELECT, ...; or a bad request), TR_ESTATE (not on a worker of rt,
 * or not connected: Redis is down and being retried), TR_EOVERLOAD, TR_ENOMEM; err
 * (may be NULL) gets a message. Only from a worker thread of rt (an actor running
 * there): the connection is that worker's.
 */
int tr_redis_submit(tr_runtime *rt, const tr_redis_req *req, char *err, size_t errlen);

/* Whether the calling worker's command connection is up: 1, or 0 with err filled
 * (opens it when it was never opened). */
int tr_redis_connected(tr_runtime *rt, char *err, size_t errlen);

/*
 * Changes the server (url; NULL keeps it) and the default command timeout (ms; 0
 * keeps it) for the whole runtime. Connections reconnect to a new URL at their next
 * use; subscriptions move with the subscriber connection. 0, or TR_EINVAL with err
 * filled (a URL that does not parse), TR_ENOMEM.
 * URL: redis://[[user]:password@]host[:port][/db] (user and password %-decoded; a user
 * is sent as AUTH user password). Default redis://127.0.0.1:6379/0, or
 * TROUPE_REDIS_URL; the timeout defaults to TROUPE_REDIS_TIMEOUT_MS, else 5000.
 */
int tr_redis_configure(tr_runtime *rt, const char *url, int timeout_ms, char *err,
                       size_t errlen);

/* ---- pub/sub ---- */

/*
 * Delivery of a message to a subscriber that asked for a hook (target.hook != NULL):
 * res has count 2 (channel, then message: two TR_REDIS_STR items), or 3 for a pattern
 * subscription (then the pattern), and user = the target's {pid, ref}; the hook owns res. It returns 0, or TR_ENOPROC when the
 * subscriber is gone (the subscription is dropped then). Runs on worker 0's thread.
 */
typedef int (*tr_redis_hook)(tr_runtime *rt, tr_redis_result *res);

/* The tag of the messages sent to plain pid subscribers: TR_LUA_TAG_VALUE of
 * runtime/lua/lactor.h (a codec-encoded value), repeated here to keep this header
 * Lua-free. */
#define TR_REDIS_MSG_TAG 0x4C554101u

typedef struct tr_redis_target {
    tr_pid        pid;
    uint64_t      ref;   /* with hook: passed back in user[1] */
    tr_redis_hook hook;  /* NULL: each message goes to pid as a Lua value message
                            (TR_REDIS_MSG_TAG): {type="redis", channel=, message=},
                            and pattern= for a pattern subscription */
} tr_redis_target;

/*
 * Subscribes target to channel (binary-safe, copied). Each (channel, pid, hook or not)
 * is subscribed once: subscribing again is a no-op. Once Redis has confirmed (at once
 * when the channel is subscribed already), confirm->done runs with status 0, or with
 * TR_ESTATE when the subscriber connection is down (the subscription is then not
 * recorded) or was lost before confirming (it stays recorded and is restored, with
 * every other, when the connection comes back). confirm may be NULL; only its done and
 * user are used. 0, or TR_ENOMEM, TR_ESTOPPED, TR_EINVAL at once (done not called).
 */
int tr_redis_subscribe(tr_runtime *rt, const char *channel, size_t len,
                       const tr_redis_target *target, const tr_redis_req *confirm);

/* Drops the subscriptions of pid to channel (both kinds); the channel is left when it
 * has no subscriber any more. Once they are dropped (no message reaches pid after
 * that), confirm->done runs with status 0; confirm may be NULL. 0, TR_ENOMEM,
 * TR_ESTOPPED (done not called). */
int tr_redis_unsubscribe(tr_runtime *rt, const char *channel, size_t len, tr_pid pid,
                         const tr_redis_req *confirm);

/* The same for a glob-style pattern (PSUBSCRIBE: h?llo, h*llo, h[ae]llo): each
 * message of a channel it matches carries the pattern too. A pattern and a channel of
 * the same name are separate subscriptions. */
int tr_redis_psubscribe(tr_runtime *rt, const char *pattern, size_t len,
                        const tr_redis_target *target, const tr_redis_req *confirm);
int tr_redis_punsubscribe(tr_runtime *rt, const char *pattern, size_t len, tr_pid pid,
                          const tr_redis_req *confirm);

#endif
