/*
 * actor.c — spawning, sending, one actor's turn, and exit.
 *
 * State machine (one CAS per wake-up): a sender pushes to the mailbox, then moves
 * IDLE → QUEUED and schedules the actor; only the worker that dequeued it moves it
 * QUEUED → RUNNING → IDLE (or back to QUEUED if messages remain), so an actor runs
 * on one worker at a time. Going idle stores IDLE and then looks at the mailbox once
 * more: either it sees the new message or the sender sees IDLE (both seq_cst).
 */
#include <sched.h>
#include <string.h>

#include "internal.h"

_Thread_local tr_worker *tr__cur_worker;
_Thread_local tr_actor  *tr__cur_actor;

tr_pid tr__current_pid(void)
{
    return tr__cur_actor ? tr__cur_actor->self : TR_PID_NONE;
}

tr_actor_ext *tr__ext(tr_actor *a)
{
    if (a->ext == NULL) {
        a->ext = tr_malloc(sizeof(tr_actor_ext));
        if (a->ext)
            memset(a->ext, 0, sizeof(tr_actor_ext));
    }
    return a->ext;
}

static void ext_free(tr_actor *a)
{
    tr_actor_ext *x = a->ext;
    if (x == NULL)
        return;
    tr_free(x->links);
    tr_free(x->watchers);
    tr_free(x->watching);
    tr_free(x->calls);
    tr_free(x);
    a->ext = NULL;
}

/* Wakes a (possibly) idle actor after a push. */
static inline void wake_actor(tr_runtime *rt, tr_actor *a)
{
    uint32_t s = atomic_load_explicit(&a->state, memory_order_seq_cst);
    if (s != TR__IDLE)
        return;
    if (atomic_compare_exchange_strong(&a->state, &s, TR__QUEUED))
        tr__schedule(rt, a);
}

/* Pushes m to the live actor `to`. Takes ownership of m in every case. */
int tr__deliver(tr_runtime *rt, tr_pid to, tr_msg *m)
{
    tr_actor *a = tr__lookup(rt, to);
    if (a == NULL) {
        tr__msg_release(m);  /* never delivered: a pointer payload stays the sender's */
        return TR_ENOPROC;
    }
    if (a->mb_max && (m->kind == TR_MSG_USER || m->kind == TR_MSG_CALL)) {
        int32_t n = atomic_fetch_add_explicit(&a->mb_count, 1, memory_order_relaxed);
        if ((uint32_t)n >= a->mb_max) {
            atomic_fetch_sub_explicit(&a->mb_count, 1, memory_order_relaxed);
            tr__msg_release(m);
            return TR_EOVERLOAD;
        }
        m->tr__flags |= TR__MF_COUNTED;
    }
    m->tr__to = to;
    tr__mb_push(a, m);
    wake_actor(rt, a);
    if (atomic_load_explicit(&a->gen, memory_order_seq_cst) != tr__pid_gen(to)) {
        /* The target died around the push, maybe after its last sweep: take the dead
         * slot over and sweep it, unless its finisher or a new incarnation has it. */
        uint32_t s = TR__DEAD;
        if (atomic_compare_exchange_strong(&a->state, &s, TR__RUNNING))
            tr__sweep_dead(a);
    }
    return 0;
}

int tr_send_msg(tr_runtime *rt, tr_pid to, tr_msg *msg)
{
    if (msg == NULL)
        return TR_EINVAL;
    msg->from = tr__current_pid();
    return tr__deliver(rt, to, msg);
}

int tr_send(tr_runtime *rt, tr_pid to, uint32_t tag, const void *data, size_t size)
{
    tr_msg *m = tr_msg_new(tag, data, size);
    return m ? tr_send_msg(rt, to, m) : TR_ENOMEM;
}

int tr_send_ptr(tr_runtime *rt, tr_pid to, uint32_t tag, void *ptr,
                void (*ptr_free)(void *))
{
    tr_msg *m = tr__msg_alloc(0);
    if (m == NULL)
        return TR_ENOMEM;
    m->tag = tag;
    m->from = tr__current_pid();
    m->ptr = ptr;
    m->ptr_free = ptr_free;
    int rc = tr__deliver(rt, to, m);
    /* On failure the message was freed without its pointer: the caller keeps ptr. */
    return rc;
}

int tr_alive(tr_runtime *rt, tr_pid pid)
{
    return tr__lookup(rt, pid) != NULL;
}

/* Publishes a quiet actor as IDLE. From the store on, another thread may own it. */
static void go_idle(tr_runtime *rt, tr_actor *a, bool requeue)
{
    atomic_store_explicit(&a->state, TR__IDLE, memory_order_seq_cst);
    if (tr__mb_maybe_nonempty(a)) {
        uint32_t s = TR__IDLE;
        if (atomic_compare_exchange_strong(&a->state, &s, TR__QUEUED)) {
            if (requeue)
                tr__requeue(tr__cur_worker, a);
            else
                tr__schedule(rt, a);
        }
    }
}

/* ---- spawn ---------------------------------------------------------------- */

int tr_spawn(tr_runtime *rt, const tr_behaviour *b, void *arg,
             const tr_spawn_opts *opts, tr_pid *pid)
{
    static const tr_spawn_opts defaults = TR_SPAWN_OPTS_INIT;
    if (opts == NULL)
        opts = &defaults;
    if (b == NULL || pid == NULL || opts->worker >= rt->n_workers || opts->worker < -1)
        return TR_EINVAL;
    if (atomic_load(&rt->stopping))
        return TR_ESTOPPED;

    tr_actor *a;
    int rc = tr__slot_alloc(rt, &a);
    if (rc < 0)
        return rc;
    a->beh = b;
    a->ustate = NULL;
    a->ext = NULL;
    a->flags = opts->trap_exit ? TR__AF_TRAP : 0;
    a->exit_reason = TR_EXIT_NORMAL;
    a->current = NULL;
    a->pinned = opts->worker;
    a->mb_max = opts->max_mailbox;
    a->run_next = NULL;
    for (uint32_t s = TR__DEAD;
         !atomic_compare_exchange_weak(&a->state, &s, TR__RUNNING); s = TR__DEAD)
        sched_yield();   /* a racing sender is sweeping the dead slot */
    a->self = tr__pid_make(a->index, atomic_load(&a->gen));
    atomic_fetch_add(&rt->live, 1);
    atomic_fetch_add_explicit(&rt->spawned, 1, memory_order_relaxed);

    if (opts->link != TR_PID_NONE) {
        tr_actor_ext *x = tr__ext(a);
        if (x == NULL || tr__pids_add(&x->links, &x->n_links, &x->cap_links, opts->link) < 0) {
            rc = TR_ENOMEM;
            goto fail;
        }
        rc = tr__signal(rt, opts->link, TR__SIG_LINK, a->self, 0, 0);
        if (rc < 0) {
            x->n_links = 0;
            goto fail;
        }
    }

    if (b->init) {
        tr_actor *saved = tr__cur_actor;
        tr__cur_actor = a;
        rc = b->init(a, arg, &a->ustate);
        tr__cur_actor = saved;
        if (rc < 0) {
            if (opts->link != TR_PID_NONE && a->ext &&
                tr__pids_remove(a->ext->links, &a->ext->n_links, opts->link))
                tr__signal(rt, opts->link, TR__SIG_UNLINK, a->self, 0, 0);
            if (rc != TR_ENOMEM)
                rc = TR_EFAIL;
            goto fail;
        }
    }
    *pid = a->self;

    if (a->flags & TR__AF_EXITING) {   /* init called tr_exit: finish on a worker */
        atomic_store_explicit(&a->state, TR__QUEUED, memory_order_relaxed);
        tr__schedule(rt, a);
    } else {
        go_idle(rt, a, false);
    }
    /* A stop that raced with this spawn may have missed it in its sweep. */
    if (atomic_load(&rt->stopping))
        tr__signal(rt, a->self, TR__SIG_EXIT, TR_PID_NONE, 0, TR_EXIT_SHUTDOWN);
    return 0;

fail:
    /* Nothing of the actor stays: its links and monitors hear an ERROR exit. */
    tr__actor_finish(rt, a, TR_EXIT_ERROR, false);
    atomic_fetch_sub_explicit(&rt->spawned, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&rt->exited, 1, memory_order_relaxed);
    return rc;
}

/* ---- the turn --------------------------------------------------------------- */

void tr__actor_set_exit(tr_actor *a, int reason)
{
    if (!(a->flags & TR__AF_EXITING)) {
        a->flags |= TR__AF_EXITING;
        a->exit_reason = reason;
    }
}

/* Hands m to receive and frees it afterwards unless kept. A kept message belongs to
 * the receiver from tr_msg_keep on (it may already be freed by another thread when
 * receive returns), so it is not touched again. */
void tr__invoke(tr_actor *a, tr_msg *m)
{
    int rc = 0;
    if (tr__cur_worker)
        tr__cur_worker->delivered++;
    if (a->beh->receive) {
        a->current = m;
        rc = a->beh->receive(a, a->ustate, m);
        a->current = NULL;
    }
    if (rc < 0)
        tr__actor_set_exit(a, TR_EXIT_ERROR);
    if (a->flags & TR__AF_KEPT) {
        a->flags &= ~(uint32_t)TR__AF_KEPT;
        return;
    }
    if (m->kind == TR_MSG_CALL && (a->flags & TR__AF_EXITING) &&
        !(m->tr__flags & TR__MF_REPLIED))
        tr__reply_status(a->rt, a->self, m->from, m->ref, TR_EEXIT);
    tr__msg_release(m);
}

static void dispatch(tr_actor *a, tr_msg *m)
{
    switch (m->kind) {
    case TR_MSG_USER:
    case TR_MSG_CALL:
        tr__invoke(a, m);
        return;
    case TR_MSG_REPLY:
    case TR_MSG_TIMEOUT:
        if (tr__call_settle(a, m))
            tr__invoke(a, m);
        else
            tr_msg_free(m); /* late reply to a call that timed out */
        return;
    default: /* DOWN and the internal signals */
        tr__handle_signal(a, m);
        return;
    }
}

void tr__run_actor(tr_worker *w, tr_actor *a)
{
    tr_runtime *rt = w->rt;
    atomic_store_explicit(&a->state, TR__RUNNING, memory_order_relaxed);
    tr__cur_actor = a;
    uint32_t budget = rt->cfg.turn_budget, n = 0;
    const tr_pid self = a->self;
    /* quit: the stop deadline passed; what is left is dropped when the actor is killed. */
    while (!(a->flags & TR__AF_EXITING) && n < budget &&
           !atomic_load_explicit(&rt->quit, memory_order_relaxed)) {
        tr_msg *m = tr__mb_pop(a);
        if (m == NULL)
            break;
        if (m->tr__flags & TR__MF_COUNTED)
            atomic_fetch_sub_explicit(&a->mb_count, 1, memory_order_relaxed);
        if (m->tr__to != self) {   /* sent to an earlier incarnation of this slot */
            tr__msg_drop(rt, m);
            continue;
        }
        n++;
        dispatch(a, m);
    }
    tr__cur_actor = NULL;
    if (a->flags & TR__AF_EXITING) {
        tr__actor_finish(rt, a, a->exit_reason, true);
        return;
    }
    if (!tr__mb_quiet(a)) {
        /* Budget spent, or a push in progress (between a sender's exchange and its
         * link): to the back of the queue, still owned. */
        atomic_store_explicit(&a->state, TR__QUEUED, memory_order_relaxed);
        tr__requeue(w, a);
        return;
    }
    go_idle(rt, a, true);
}

/* ---- exit ----------------------------------------------------------------------- */

/*
 * Ends the incarnation: the generation moves first (new sends fail with ENOPROC),
 * terminate runs, links and monitors hear of it, the mailbox is drained (calls get
 * TR_EEXIT, other messages are dropped and counted), and the slot is freed.
 * Runs on the thread that ran the actor (or that stops the runtime).
 */
void tr__actor_finish(tr_runtime *rt, tr_actor *a, int reason, bool run_terminate)
{
    a->flags |= TR__AF_EXITING;
    atomic_fetch_add_explicit(&a->gen, 1, memory_order_acq_rel);
    if (run_terminate && a->beh->terminate) {
        tr_actor *saved = tr__cur_actor;
        tr__cur_actor = a;
        a->beh->terminate(a, a->ustate, reason);
        tr__cur_actor = saved;
    }
    tr__calls_cancel(a);
    tr__registry_drop_pid(rt, a->self);
    tr__notify_exit(a, reason);
    ext_free(a);
    a->ustate = NULL;
    tr__sweep_dead(a);
    tr__slot_release(rt, a);
    tr__actor_exited(rt);
}

void tr_exit(tr_ctx *ctx, int reason)
{
    tr__actor_set_exit(ctx, reason);
}

void tr_msg_keep(tr_ctx *ctx, tr_msg *msg)
{
    if (ctx->current == msg)
        ctx->flags |= TR__AF_KEPT;
}

tr_pid tr_self(const tr_ctx *ctx) { return ctx->self; }
tr_runtime *tr_ctx_runtime(const tr_ctx *ctx) { return ctx->rt; }
int tr_ctx_worker(const tr_ctx *ctx)
{
    (void)ctx;
    return tr__cur_worker ? tr__cur_worker->id : -1;
}

tr_ctx *tr_ctx_enter(tr_ctx *ctx)
{
    tr_actor *prev = tr__cur_actor;
    tr__cur_actor = ctx;
    return prev;
}

void tr_ctx_leave(tr_ctx *ctx, tr_ctx *previous)
{
    tr__cur_actor = previous;
    /* An exit requested outside a turn: a signal to itself gets it a turn. */
    if (ctx->flags & TR__AF_EXITING)
        tr__signal(ctx->rt, ctx->self, TR__SIG_EXIT, ctx->self, 0, ctx->exit_reason);
}
