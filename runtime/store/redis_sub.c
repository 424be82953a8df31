/*
 * redis_sub.c — pub/sub: one subscriber connection per runtime, on worker 0.
 *
 * The connection belongs to worker 0's loop, so everything about it runs on worker
 * 0's thread: a C actor pinned there (the "subscriber") takes the requests of every
 * other thread from its mailbox, and hiredis's callbacks run on the same loop. The
 * channel table maps each channel to its subscribers (an actor pid, or a pid with a
 * hook: the Lua binding's function subscriptions) and to the state of the channel
 * on the server:
 *
 *   NONE --SUBSCRIBE--> PENDING --confirmed--> ON --UNSUBSCRIBE--> LEAVING --confirmed--> gone
 *
 * A channel is subscribed once on the server however many subscribers it has. A
 * subscription asked for while the channel is LEAVING waits for the UNSUBSCRIBE to be
 * confirmed and is then sent again (hiredis 0.14 drops a channel's callback when the
 * unsubscribe confirmation arrives, even if a SUBSCRIBE went out in between). When
 * the connection comes back, every channel that has subscribers is subscribed again.
 * Patterns (PSUBSCRIBE) are entries of the same table, told apart by their flag, with
 * the same states; a message matched by several patterns and by its channel reaches
 * the subscribers of each, as Redis sends it once for each.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis_int.h"

#define NBUCKETS 256

enum { CH_NONE, CH_PENDING, CH_ON, CH_LEAVING };
enum { REQ_SUB, REQ_UNSUB, REQ_POKE };

typedef struct target {
    tr_redis_target t;
    struct target  *next;
} target;

typedef struct waiter {
    void          (*done)(tr_runtime *rt, tr_redis_result *res);
    uint64_t        user[2];
    struct waiter  *next;
} waiter;

typedef struct channel {
    struct channel *next;
    target         *targets;
    waiter         *waiters;     /* subscribe calls waiting for the confirmation */
    int             state;
    int             pattern;     /* a PSUBSCRIBE pattern, not a channel */
    uint32_t        hash;
    size_t          len;
    char            name[];
} channel;

struct tr__rsub {
    tr_redis  *r;
    tr__rconn *conn;
    channel   *b[NBUCKETS];
};

typedef struct sub_req {
    int             kind;
    int             pattern;
    tr_redis_target target;      /* REQ_SUB; REQ_UNSUB: target.pid */
    void          (*done)(tr_runtime *rt, tr_redis_result *res);
    uint64_t        user[2];
    size_t          len;
    char            name[];
} sub_req;

/* ---- the channel table ---- */

static uint32_t hash(const char *s, size_t n, int pattern)
{
    uint32_t h = 2166136261u ^ (uint32_t)pattern;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

static channel **find(tr__rsub *s, const char *name, size_t len, int pattern, uint32_t h)
{
    channel **p = &s->b[h % NBUCKETS];
    while (*p && ((*p)->hash != h || (*p)->len != len || (*p)->pattern != pattern ||
                  memcmp((*p)->name, name, len)))
        p = &(*p)->next;
    return p;
}

static void free_channel(channel *ch)
{
    while (ch->targets) {
        target *t = ch->targets;
        ch->targets = t->next;
        tr_free(t);
    }
    while (ch->waiters) {
        waiter *w = ch->waiters;
        ch->waiters = w->next;
        tr_free(w);
    }
    tr_free(ch);
}

/* Answers every waiter of ch with status (0: subscribed). */
static void answer(tr__rsub *s, channel *ch, int status, const char *msg)
{
    while (ch->waiters) {
        waiter *w = ch->waiters;
        ch->waiters = w->next;
        tr_redis_result *res = s->r->closing ? NULL
                             : tr__redis_error_result(status, msg, w->user);
        if (res)
            w->done(s->r->rt, res);
        tr_free(w);
    }
}

/* ---- the connection ---- */

static void on_sub(redisAsyncContext *ac, void *reply, void *priv);

/* SUBSCRIBE or UNSUBSCRIBE ch (PSUBSCRIBE, PUNSUBSCRIBE for a pattern). */
static void send_cmd(tr__rsub *s, channel *ch, int sub)
{
    const char *cmd = sub ? (ch->pattern ? "PSUBSCRIBE" : "SUBSCRIBE")
                          : (ch->pattern ? "PUNSUBSCRIBE" : "UNSUBSCRIBE");
    const char *argv[2] = { cmd, ch->name };
    size_t lens[2] = { strlen(cmd), ch->len };
    redisAsyncCommandArgv(s->conn->ac, on_sub, NULL, 2, argv, lens);
}

/* A channel the server is not (or no longer) subscribed to and nobody wants. */
static void drop_if_unused(tr__rsub *s, channel *ch)
{
    if (ch->targets || ch->waiters || (ch->state != CH_NONE))
        return;
    channel **p = find(s, ch->name, ch->len, ch->pattern, ch->hash);
    *p = ch->next;
    free_channel(ch);
}

/* ch lost a subscriber: leave it on the server when it has none left. */
static void maybe_leave(tr__rsub *s, channel *ch)
{
    if (ch->targets)
        return;
    answer(s, ch, 0, "");          /* whoever waited has unsubscribed since */
    if ((ch->state == CH_ON || ch->state == CH_PENDING) && s->conn->state == TR__RC_UP) {
        send_cmd(s, ch, 0);
        ch->state = CH_LEAVING;
    } else if (ch->state != CH_LEAVING) {
        ch->state = CH_NONE;
        drop_if_unused(s, ch);
    }
}

/* The payload of a message to a plain pid: the codec encoding (runtime/lua/codec.c)
 * of {type = "redis", channel = ch, message = msg [, pattern = pat]}: a table of no
 * array items and 3 or 4 pairs, short strings (<= 63 bytes) as 0x40|n, longer ones
 * as 0x05 varint n. */
static size_t enc_str(char *o, const char *p, size_t n)
{
    size_t k = 0;
    if (n <= 63) {
        o[k++] = (char)(0x40 | n);
    } else {
        o[k++] = 0x05;
        size_t v = n;
        do {
            o[k++] = (char)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
            v >>= 7;
        } while (v);
    }
    memcpy(o + k, p, n);
    return k + n;
}

static int send_value(tr_runtime *rt, tr_pid pid, const char *ch, size_t chlen,
                      const char *msg, size_t msglen, const char *pat, size_t patlen)
{
    char stack[512];
    size_t need = 3 + 3 * 11 + 4 + 5 + 7 + 7 + 7 + 5 + chlen + msglen + patlen;
    char *b = need <= sizeof stack ? stack : tr_malloc(need);
    if (b == NULL)
        return TR_ENOMEM;
    size_t n = 0;
    b[n++] = 0x06;
    b[n++] = 0x00;
    b[n++] = pat ? 0x04 : 0x03;
    n += enc_str(b + n, "type", 4);
    n += enc_str(b + n, "redis", 5);
    n += enc_str(b + n, "channel", 7);
    n += enc_str(b + n, ch, chlen);
    n += enc_str(b + n, "message", 7);
    n += enc_str(b + n, msg, msglen);
    if (pat) {
        n += enc_str(b + n, "pattern", 7);
        n += enc_str(b + n, pat, patlen);
    }
    int rc = tr_send(rt, pid, TR_REDIS_MSG_TAG, b, n);
    if (b != stack)
        tr_free(b);
    return rc;
}

/* A message published on the channel chname: to ch's subscribers (ch is that channel,
 * or a pattern that matched it). */
static void dispatch(tr__rsub *s, channel *ch, const redisReply *chname,
                     const redisReply *msg)
{
    tr_runtime *rt = s->r->rt;
    const char *pat = ch->pattern ? ch->name : NULL;
    size_t patlen = ch->pattern ? ch->len : 0;
    target **p = &ch->targets;
    while (*p) {
        target *t = *p;
        int rc;
        if (t->t.hook) {
            uint64_t user[2] = { t->t.pid, t->t.ref };
            tr_redis_result *res = tr__redis_msg_result(chname->str, chname->len, msg->str,
                                                        msg->len, pat, patlen, user);
            rc = res ? t->t.hook(rt, res) : TR_ENOMEM;
        } else {
            rc = send_value(rt, t->t.pid, chname->str, chname->len, msg->str, msg->len,
                            pat, patlen);
        }
        if (rc == TR_ENOPROC) {        /* the subscriber is gone */
            *p = t->next;
            tr_free(t);
        } else {
            p = &t->next;
        }
    }
    maybe_leave(s, ch);
}

static int is_str(const redisReply *r)
{
    return r->type == REDIS_REPLY_STRING;
}

/* Pushed replies: message/pmessage, and the (p)(un)subscribe confirmations. */
static void on_sub(redisAsyncContext *ac, void *reply, void *priv)
{
    tr__rconn *c = ac->data;
    const redisReply *rp = reply;
    (void)priv;
    if (rp == NULL || c == NULL || c->ac != ac || rp->type != REDIS_REPLY_ARRAY ||
        rp->elements < 3 || !is_str(rp->element[0]) || !is_str(rp->element[1]))
        return;
    tr__rsub *s = c->owner;
    const char *kind = rp->element[0]->str;
    int pattern = kind[0] == 'p';
    const redisReply *name = rp->element[1];
    channel *ch = *find(s, name->str, name->len, pattern, hash(name->str, name->len, pattern));
    if (ch == NULL)
        return;
    if (strcmp(kind, "message") == 0 && is_str(rp->element[2])) {
        dispatch(s, ch, name, rp->element[2]);
    } else if (strcmp(kind, "pmessage") == 0 && rp->elements >= 4 &&
               is_str(rp->element[2]) && is_str(rp->element[3])) {
        dispatch(s, ch, rp->element[2], rp->element[3]);
    } else if (strcmp(kind + pattern, "subscribe") == 0) {
        if (ch->state == CH_PENDING)
            ch->state = CH_ON;
        answer(s, ch, 0, "");
    } else if (strcmp(kind + pattern, "unsubscribe") == 0 && ch->state == CH_LEAVING) {
        if (ch->targets) {             /* wanted again meanwhile */
            send_cmd(s, ch, 1);
            ch->state = CH_PENDING;
        } else {
            ch->state = CH_NONE;
            drop_if_unused(s, ch);
        }
    }
}

static void on_up(tr__rconn *c)
{
    tr__rsub *s = c->owner;
    for (int i = 0; i < NBUCKETS; i++)
        for (channel *ch = s->b[i], *next; ch; ch = next) {
            next = ch->next;
            if (ch->targets) {
                send_cmd(s, ch, 1);
                ch->state = CH_PENDING;
            } else {
                ch->state = CH_NONE;
                drop_if_unused(s, ch);
            }
        }
}

static void on_down(tr__rconn *c)
{
    tr__rsub *s = c->owner;
    char msg[300];
    snprintf(msg, sizeof msg, "redis: connection lost (%s); the subscription is restored "
                              "on reconnect", c->why);
    for (int i = 0; i < NBUCKETS; i++)
        for (channel *ch = s->b[i], *next; ch; ch = next) {
            next = ch->next;
            answer(s, ch, TR_ESTATE, msg);
            ch->state = CH_NONE;
            drop_if_unused(s, ch);
        }
}

/* ---- requests, on worker 0 ---- */

static void confirm(tr__rsub *s, const sub_req *q, int status, const char *msg)
{
    if (q->done == NULL)
        return;
    tr_redis_result *res = tr__redis_error_result(status, msg, q->user);
    if (res)
        q->done(s->r->rt, res);
}

static int same(const tr_redis_target *a, const tr_redis_target *b)
{
    return a->pid == b->pid && (a->hook == NULL) == (b->hook == NULL);
}

static void subscribe(tr__rsub *s, sub_req *q)
{
    uint32_t h = hash(q->name, q->len, q->pattern);
    channel **p = find(s, q->name, q->len, q->pattern, h);
    channel *ch = *p;
    int down = s->conn->failed && s->conn->state != TR__RC_UP;
    char msg[300];
    if (down) {
        tr__rconn_err(s->conn, msg, sizeof msg);
        confirm(s, q, TR_ESTATE, msg);
        return;
    }
    if (ch == NULL) {
        ch = tr_malloc(sizeof *ch + q->len + 1);
        if (ch == NULL) {
            confirm(s, q, TR_ENOMEM, "redis: out of memory");
            return;
        }
        memset(ch, 0, sizeof *ch);
        ch->hash = h;
        ch->pattern = q->pattern;
        ch->len = q->len;
        memcpy(ch->name, q->name, q->len);
        ch->name[q->len] = '\0';
        *p = ch;
    }
    target *t = ch->targets;
    while (t && !same(&t->t, &q->target))
        t = t->next;
    if (t == NULL) {
        t = tr_malloc(sizeof *t);
        if (t == NULL) {
            confirm(s, q, TR_ENOMEM, "redis: out of memory");
            drop_if_unused(s, ch);
            return;
        }
        t->t = q->target;
        t->next = ch->targets;
        ch->targets = t;
    } else {
        t->t.ref = q->target.ref;
    }
    if (ch->state == CH_ON) {
        confirm(s, q, 0, "");
        return;
    }
    if (q->done) {
        waiter *w = tr_malloc(sizeof *w);
        if (w == NULL) {
            confirm(s, q, TR_ENOMEM, "redis: out of memory");
        } else {
            w->done = q->done;
            w->user[0] = q->user[0];
            w->user[1] = q->user[1];
            w->next = ch->waiters;
            ch->waiters = w;
        }
    }
    /* Not UP yet (first connect): on_up subscribes it. LEAVING: sent again once the
     * UNSUBSCRIBE is confirmed. */
    if (ch->state == CH_NONE && s->conn->state == TR__RC_UP) {
        send_cmd(s, ch, 1);
        ch->state = CH_PENDING;
    }
}

static void unsubscribe(tr__rsub *s, sub_req *q)
{
    channel *ch = *find(s, q->name, q->len, q->pattern, hash(q->name, q->len, q->pattern));
    confirm(s, q, 0, "");          /* from here on nothing reaches the pid */
    if (ch == NULL)
        return;
    for (target **p = &ch->targets; *p;) {
        target *t = *p;
        if (t->t.pid == q->target.pid) {
            *p = t->next;
            tr_free(t);
        } else {
            p = &t->next;
        }
    }
    maybe_leave(s, ch);
}

static int sub_receive(tr_ctx *ctx, void *state, tr_msg *m)
{
    tr_redis *r = state;
    sub_req *q = m->ptr;
    (void)ctx;
    if (q == NULL)
        return 0;
    if (r->sub == NULL) {
        tr__rsub *s = tr_malloc(sizeof *s);
        if (s) {
            memset(s, 0, sizeof *s);
            s->r = r;
            s->conn = tr__rconn_new(r, tr_worker_loop(r->rt, 0));
            if (s->conn == NULL) {
                tr_free(s);
                s = NULL;
            } else {
                s->conn->owner = s;
                s->conn->on_up = on_up;
                s->conn->on_down = on_down;
                r->sub = s;
            }
        }
        if (s == NULL) {
            if (q->done) {
                tr_redis_result *res = tr__redis_error_result(TR_ENOMEM, "redis: out of memory",
                                                              q->user);
                if (res)
                    q->done(r->rt, res);
            }
            tr_free(q);
            return 0;
        }
    }
    tr__rconn_refresh(r->sub->conn);
    if (q->kind == REQ_SUB)
        subscribe(r->sub, q);
    else if (q->kind == REQ_UNSUB)
        unsubscribe(r->sub, q);
    tr_free(q);
    return 0;
}

static int sub_init(tr_ctx *ctx, void *arg, void **state)
{
    (void)ctx;
    *state = arg;
    return 0;
}

static const tr_behaviour sub_behaviour_init = { "redis-subscriber", sub_init, sub_receive,
                                                 NULL };

/* Sends q to the subscriber actor (spawned on first use). Takes q. */
static int post(tr_runtime *rt, sub_req *q)
{
    tr_redis *r = tr__redis_get(rt);
    if (r == NULL) {
        tr_free(q);
        return TR_ENOMEM;
    }
    tr_pid pid = atomic_load(&r->sub_pid);
    if (pid == TR_PID_NONE) {
        pthread_mutex_lock(&r->lock);
        pid = atomic_load(&r->sub_pid);
        int rc = 0;
        if (pid == TR_PID_NONE) {
            tr_spawn_opts o = TR_SPAWN_OPTS_INIT;
            o.worker = 0;
            rc = tr_spawn(rt, &sub_behaviour_init, r, &o, &pid);
            if (rc == 0)
                atomic_store(&r->sub_pid, pid);
        }
        pthread_mutex_unlock(&r->lock);
        if (rc < 0) {
            tr_free(q);
            return rc == TR_ENOMEM ? TR_ENOMEM : TR_ESTOPPED;
        }
    }
    int rc = tr_send_ptr(rt, pid, 0x52454453u /* "REDS" */, q, tr_free);
    if (rc < 0) {
        tr_free(q);
        return rc == TR_ENOMEM ? TR_ENOMEM : TR_ESTOPPED;
    }
    return 0;
}

static sub_req *req_new(int kind, const char *name, size_t len)
{
    sub_req *q = tr_malloc(sizeof *q + len + 1);
    if (q == NULL)
        return NULL;
    memset(q, 0, sizeof *q);
    q->kind = kind;
    q->len = len;
    if (len)
        memcpy(q->name, name, len);
    q->name[len] = '\0';
    return q;
}

static int sub(tr_runtime *rt, int pattern, const char *name, size_t len,
               const tr_redis_target *target_, const tr_redis_req *confirm_)
{
    if (target_ == NULL || target_->pid == TR_PID_NONE)
        return TR_EINVAL;
    sub_req *q = req_new(REQ_SUB, name, len);
    if (q == NULL)
        return TR_ENOMEM;
    q->pattern = pattern;
    q->target = *target_;
    if (confirm_) {
        q->done = confirm_->done;
        q->user[0] = confirm_->user[0];
        q->user[1] = confirm_->user[1];
    }
    return post(rt, q);
}

static int unsub(tr_runtime *rt, int pattern, const char *name, size_t len, tr_pid pid,
                 const tr_redis_req *confirm_)
{
    sub_req *q = req_new(REQ_UNSUB, name, len);
    if (q == NULL)
        return TR_ENOMEM;
    q->pattern = pattern;
    q->target.pid = pid;
    if (confirm_) {
        q->done = confirm_->done;
        q->user[0] = confirm_->user[0];
        q->user[1] = confirm_->user[1];
    }
    return post(rt, q);
}

int tr_redis_subscribe(tr_runtime *rt, const char *channel_, size_t len,
                       const tr_redis_target *target_, const tr_redis_req *confirm_)
{
    return sub(rt, 0, channel_, len, target_, confirm_);
}

int tr_redis_unsubscribe(tr_runtime *rt, const char *channel_, size_t len, tr_pid pid,
                         const tr_redis_req *confirm_)
{
    return unsub(rt, 0, channel_, len, pid, confirm_);
}

int tr_redis_psubscribe(tr_runtime *rt, const char *pattern, size_t len,
                        const tr_redis_target *target_, const tr_redis_req *confirm_)
{
    return sub(rt, 1, pattern, len, target_, confirm_);
}

int tr_redis_punsubscribe(tr_runtime *rt, const char *pattern, size_t len, tr_pid pid,
                          const tr_redis_req *confirm_)
{
    return unsub(rt, 1, pattern, len, pid, confirm_);
}

/* After tr_redis_configure changed the URL: move the subscriber to the new server
 * now rather than at its next request. */
void tr__redis_sub_poke(tr_runtime *rt)
{
    tr_redis *r = tr_runtime_ext(rt, TR_EXT_REDIS);
    if (r == NULL || atomic_load(&r->sub_pid) == TR_PID_NONE)
        return;
    sub_req *q = req_new(REQ_POKE, NULL, 0);
    if (q)
        post(rt, q);
}

void tr__redis_sub_free(tr_redis *r)
{
    tr__rsub *s = r->sub;
    if (s == NULL)
        return;
    tr__rconn_close(s->conn);
    for (int i = 0; i < NBUCKETS; i++)
        while (s->b[i]) {
            channel *ch = s->b[i];
            s->b[i] = ch->next;
            free_channel(ch);
        }
    tr_free(s);
    r->sub = NULL;
}
