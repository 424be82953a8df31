/*
 * call.c — call/reply with references and timeouts.
 *
 * A call is a TR_MSG_CALL carrying a fresh reference; the caller records it (with its
 * timeout timer) and returns at once. The runtime settles each pending call exactly
 * once: the first REPLY or TIMEOUT with that reference reaches receive, anything
 * later is dropped. A callee that exits without answering answers TR_EEXIT for it.
 * tr_call_sync wraps this for threads outside the runtime with a proxy actor.
 */
#include <string.h>

#include "internal.h"

static atomic_uint_fast64_t foreign_refs;

uint64_t tr__new_ref(void)
{
    tr_worker *w = tr__cur_worker;
    if (w)
        return ((uint64_t)(w->id + 1) << 48) | ++w->next_ref;
    return (0xFFFFull << 48) | (atomic_fetch_add(&foreign_refs, 1) + 1);
}

/* A reply with no payload from callee: how a callee that exits answers its calls. */
int tr__reply_status(tr_runtime *rt, tr_pid callee, tr_pid caller, uint64_t ref,
                     int32_t status)
{
    return tr__signal(rt, caller, TR_MSG_REPLY, callee, ref, status);
}

int tr_call(tr_ctx *a, tr_pid to, uint32_t tag, const void *data, size_t size,
            int timeout_ms, uint64_t *ref)
{
    tr_runtime *rt = a->rt;
    tr_actor_ext *x = tr__ext(a);
    if (x == NULL)
        return TR_ENOMEM;
    if (x->n_calls == x->cap_calls) {
        uint32_t cap = x->cap_calls ? x->cap_calls * 2 : 4;
        tr__pending *v = tr_realloc(x->calls, sizeof(*v) * cap);
        if (v == NULL)
            return TR_ENOMEM;
        x->calls = v;
        x->cap_calls = cap;
    }
    tr_msg *m = tr__msg_alloc(size);
    if (m == NULL)
        return TR_ENOMEM;
    uint64_t r = tr__new_ref();
    m->kind = TR_MSG_CALL;
    m->tag = tag;
    m->ref = r;
    m->from = a->self;
    if (size)
        memcpy(m->data, data, size);

    uint64_t timer = 0;
    if (timeout_ms >= 0) {
        tr_msg *t = tr__msg_alloc(0);
        if (t == NULL) {
            tr__msg_release(m);
            return TR_ENOMEM;
        }
        t->kind = TR_MSG_TIMEOUT;
        t->from = to;
        t->ref = r;
        t->tag = tag;
        t->status = TR_ETIMEDOUT;
        int rc = tr__timer_add(rt, a->self, t, (uint64_t)timeout_ms, 0, &timer);
        if (rc < 0) {
            tr__msg_release(m);
            return rc;
        }
    }
    int rc = tr__deliver(rt, to, m);
    if (rc < 0) {
        if (timer)
            tr_timer_cancel(rt, timer);
        return rc;
    }
    x->calls[x->n_calls].ref = r;
    x->calls[x->n_calls].timer = timer;
    x->n_calls++;
    if (ref)
        *ref = r;
    return 0;
}

/* A REPLY or TIMEOUT arrived: true if it settles a pending call (then removed). */
bool tr__call_settle(tr_actor *a, tr_msg *m)
{
    tr_actor_ext *x = a->ext;
    if (x == NULL)
        return false;
    for (uint32_t i = 0; i < x->n_calls; i++) {
        if (x->calls[i].ref != m->ref)
            continue;
        if (m->kind == TR_MSG_REPLY && x->calls[i].timer)
            tr_timer_cancel(a->rt, x->calls[i].timer);
        x->calls[i] = x->calls[--x->n_calls];
        return true;
    }
    return false;
}

void tr__calls_cancel(tr_actor *a)
{
    tr_actor_ext *x = a->ext;
    if (x == NULL)
        return;
    for (uint32_t i = 0; i < x->n_calls; i++)
        if (x->calls[i].timer)
            tr_timer_cancel(a->rt, x->calls[i].timer);
    x->n_calls = 0;
}

int tr_reply_to(tr_runtime *rt, tr_pid caller, uint64_t ref, uint32_t tag,
                const void *data, size_t size)
{
    tr_msg *m = tr__msg_alloc(size);
    if (m == NULL)
        return TR_ENOMEM;
    m->kind = TR_MSG_REPLY;
    m->tag = tag;
    m->ref = ref;
    m->from = tr__current_pid();
    if (size)
        memcpy(m->data, data, size);
    return tr__deliver(rt, caller, m);
}

int tr_reply_status_to(tr_runtime *rt, tr_pid caller, uint64_t ref, int status)
{
    return tr__reply_status(rt, tr__current_pid(), caller, ref, status);
}

int tr_reply(tr_runtime *rt, const tr_msg *request, uint32_t tag, const void *data,
             size_t size)
{
    if (request == NULL || request->kind != TR_MSG_CALL)
        return TR_EINVAL;
    ((tr_msg *)request)->tr__flags |= TR__MF_REPLIED;
    return tr_reply_to(rt, request->from, request->ref, tag, data, size);
}

/* ---- tr_call_sync: a proxy actor makes the call and hands the answer over ---- */

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t  cond;
    atomic_int      refs;     /* the waiting thread and the proxy: starts at 2 */
    int             done, rc;
    tr_msg         *reply;
    tr_pid          to;
    uint32_t        tag;
    const void     *data;
    size_t          size;
    int             timeout_ms;
} sync_call;

static void sync_release(sync_call *s)
{
    if (atomic_fetch_sub(&s->refs, 1) == 1) {
        tr_msg_free(s->reply);
        pthread_mutex_destroy(&s->lock);
        pthread_cond_destroy(&s->cond);
        tr_free(s);
    }
}

static void sync_finish(sync_call *s, int rc, tr_msg *reply)
{
    pthread_mutex_lock(&s->lock);
    if (!s->done) {
        s->done = 1;
        s->rc = rc;
        s->reply = reply;
        reply = NULL;
        pthread_cond_signal(&s->cond);
    }
    pthread_mutex_unlock(&s->lock);
    tr_msg_free(reply);
}

static int proxy_init(tr_ctx *ctx, void *arg, void **state)
{
    sync_call *s = arg;
    *state = s;
    return tr_call(ctx, s->to, s->tag, s->data, s->size, s->timeout_ms, NULL);
}

static int proxy_receive(tr_ctx *ctx, void *state, tr_msg *msg)
{
    sync_call *s = state;
    if (msg->kind == TR_MSG_REPLY) {
        if (msg->status < 0) {
            sync_finish(s, msg->status, NULL);
        } else {
            tr_msg_keep(ctx, msg);
            sync_finish(s, 0, msg);
        }
        tr_exit(ctx, TR_EXIT_NORMAL);
    } else if (msg->kind == TR_MSG_TIMEOUT) {
        sync_finish(s, TR_ETIMEDOUT, NULL);
        tr_exit(ctx, TR_EXIT_NORMAL);
    }
    return 0;
}

static void proxy_terminate(tr_ctx *ctx, void *state, int reason)
{
    (void)ctx;
    (void)reason;
    sync_call *s = state;
    sync_finish(s, TR_ESTOPPED, NULL); /* no-op when already answered */
    sync_release(s);
}

static const tr_behaviour proxy_behaviour = {
    "call_sync", proxy_init, proxy_receive, proxy_terminate
};

int tr_call_sync(tr_runtime *rt, tr_pid to, uint32_t tag, const void *data, size_t size,
                 int timeout_ms, tr_msg **reply)
{
    if (tr__cur_worker && tr__cur_worker->rt == rt)
        return TR_ESTATE;
    if (reply)
        *reply = NULL;
    sync_call *s = tr_malloc(sizeof(*s));
    if (s == NULL)
        return TR_ENOMEM;
    memset(s, 0, sizeof(*s));
    if (pthread_mutex_init(&s->lock, NULL) != 0) {
        tr_free(s);
        return TR_ESYS;
    }
    if (pthread_cond_init(&s->cond, NULL) != 0) {
        pthread_mutex_destroy(&s->lock);
        tr_free(s);
        return TR_ESYS;
    }
    atomic_init(&s->refs, 2);
    s->to = to;
    s->tag = tag;
    s->data = data;
    s->size = size;
    s->timeout_ms = timeout_ms;

    tr_pid proxy;
    int rc = tr_spawn(rt, &proxy_behaviour, s, NULL, &proxy);
    if (rc < 0) {
        /* init failed: the call never went out; its error is in the proxy's init.
         * Spawn failed before or in init, so terminate did not run: one ref left. */
        atomic_fetch_sub(&s->refs, 1);
        sync_release(s);
        return rc == TR_EFAIL ? tr__lookup(rt, to) ? TR_ENOMEM : TR_ENOPROC : rc;
    }
    pthread_mutex_lock(&s->lock);
    while (!s->done)
        pthread_cond_wait(&s->cond, &s->lock);
    rc = s->rc;
    if (reply && rc == 0) {
        *reply = s->reply;
        s->reply = NULL;
    }
    pthread_mutex_unlock(&s->lock);
    sync_release(s);
    return rc;
}
