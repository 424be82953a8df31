/*
 * supervisor.c — an Erlang/OTP-style supervisor, as a C actor.
 *
 * The supervisor traps exits and owns a copy of its spec. Every child is spawned
 * linked to it, so a child's exit arrives as a TR_MSG_EXIT from the child's pid.
 * The supervisor never blocks its worker: stopping a child is "monitor it, send
 * SHUTDOWN, wait for the DOWN (or a timer, then KILL)", driven by messages. As in
 * OTP the stop waits for a monitor's DOWN, not for the link's EXIT: DOWN arrives
 * exactly once whatever happened before, while the EXIT may have been sent already
 * or, once the child has handled our exit signal, may not come at all. Children are
 * stopped one at a time, highest start index first, and started in spec order.
 *
 * Bookkeeping is per child with three flags:
 *   to_stop   the child must be stopped (restart of a group, or shutdown);
 *   stopping  SHUTDOWN/KILL was sent; its DOWN is awaited (at most one at a time);
 *   to_start  the child must be (re)started once no stop is pending.
 * sup_advance() moves the machine forward after every event. An EXIT from a child
 * that is being (or about to be) stopped is never counted as a crash.
 *
 * An EXIT from a pid that is not a current child is handled as in OTP: from the
 * parent (the link given to tr_supervisor_start) or from outside any actor (pid 0:
 * the runtime stopping, a tr_kill from an embedder's thread), the supervisor stops
 * its children and exits with that reason; from anyone else (a former child whose
 * EXIT arrives after its DOWN, an unrelated actor) it is ignored.
 */
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "troupe.h"

/* Message tags of the supervisor. KICK and TIMEOUT are only honoured from itself. */
enum {
    SUP_TAG_WHICH   = 0x53555001u, /* call: payload = child id; reply = tr_pid */
    SUP_TAG_TIMEOUT = 0x53555002u, /* timer: payload = pid of a child slow to stop */
    SUP_TAG_KICK    = 0x53555003u  /* self: retry starting children after a failure */
};

typedef struct sup_child {
    char          *id;          /* owned copy; spec.id points here */
    tr_child_spec  spec;
    tr_pid         pid;         /* 0 while not running */
    uint64_t       timer;       /* shutdown timer, valid when has_timer */
    int            has_timer;
    uint64_t       mon_ref;     /* monitor while stopping, valid when monitored */
    int            monitored;
    int            to_stop, stopping, to_start;
    int            deleted;     /* a temporary child that is gone for good */
} sup_child;

typedef struct sup_state {
    tr_sup_strategy strategy;
    tr_pid      parent;         /* its EXIT stops the supervisor; 0: none */
    int         intensity, period_ms;
    int         n;
    sup_child  *children;
    uint64_t   *restarts;       /* times (ms) of the restarts inside the window */
    void      (*arg_free)(void *arg);
    int         n_restarts, cap_restarts;
    int         shutting_down;  /* stop every child, then exit with exit_reason */
    int         exit_reason;
    int         exited;         /* tr_exit called: nothing more to do */
} sup_state;

/* What tr_supervisor_start hands to init; init reports its own error in err. */
typedef struct sup_start {
    const tr_sup_spec *spec;
    tr_pid             parent;
    int                err;
} sup_start;

static uint64_t sup_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sup_state_free(tr_runtime *rt, sup_state *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->n; i++) {
        if (s->children[i].has_timer)
            tr_timer_cancel(rt, s->children[i].timer);
        tr_free(s->children[i].id);
    }
    tr_free(s->children);
    tr_free(s->restarts);
    tr_free(s);
}

/* Copies start's spec into a new state (no child started). NULL on out of memory. */
static sup_state *sup_state_new(const sup_start *start)
{
    const tr_sup_spec *spec = start->spec;
    sup_state *s = tr_malloc(sizeof *s);
    if (!s)
        return NULL;
    memset(s, 0, sizeof *s);
    s->strategy = spec->strategy;
    s->parent = start->parent;
    s->intensity = spec->intensity;
    s->period_ms = spec->period_ms;
    s->arg_free = spec->arg_free;
    if (spec->n_children > 0) {
        size_t bytes = (size_t)spec->n_children * sizeof *s->children;
        s->children = tr_malloc(bytes);
        if (!s->children)
            goto err;
        memset(s->children, 0, bytes);
    }
    for (int i = 0; i < spec->n_children; i++) {
        sup_child *c = &s->children[i];
        size_t len = strlen(spec->children[i].id) + 1;
        c->id = tr_malloc(len);
        if (!c->id)
            goto err;
        s->n = i + 1;
        memcpy(c->id, spec->children[i].id, len);
        c->spec = spec->children[i];
        c->spec.id = c->id;
    }
    return s;
err:
    sup_state_free(NULL, s);
    return NULL;
}

/* Spawns child i linked to the supervisor. 0 or tr_spawn's error. */
static int sup_start_child(tr_ctx *ctx, sup_child *c)
{
    tr_spawn_opts opts = c->spec.opts;
    opts.link = tr_self(ctx);
    tr_pid pid = 0;
    int rc = tr_spawn(tr_ctx_runtime(ctx), c->spec.behaviour, c->spec.arg, &opts, &pid);
    if (rc < 0)
        return rc;
    c->pid = pid;
    c->to_start = 0;
    return 0;
}

/* Asks child c to stop: SHUTDOWN now and KILL after shutdown_ms (0: KILL at once,
 * < 0: never). Its DOWN is then awaited; if the timer cannot be set, KILL at once.
 * If even the monitor cannot be set (out of memory), the link's EXIT is awaited. */
static void sup_stop_child(tr_ctx *ctx, sup_child *c)
{
    tr_runtime *rt = tr_ctx_runtime(ctx);
    c->stopping = 1;
    c->to_stop = 0;
    c->monitored = tr_monitor(ctx, c->pid, &c->mon_ref) == 0;
    if (c->spec.shutdown_ms == 0) {
        tr_kill(rt, c->pid, TR_EXIT_KILL);
        return;
    }
    /* TR_ENOPROC is fine: the child is already gone and its DOWN is on its way. */
    tr_kill(rt, c->pid, TR_EXIT_SHUTDOWN);
    if (c->spec.shutdown_ms < 0)
        return;
    if (tr_send_after(rt, tr_self(ctx), SUP_TAG_TIMEOUT, &c->pid, sizeof c->pid,
                      (uint64_t)c->spec.shutdown_ms, &c->timer) == 0)
        c->has_timer = 1;
    else
        tr_kill(rt, c->pid, TR_EXIT_KILL);
}

/* Records a restart now. Returns 1 if it is within the intensity, 0 if it makes more
 * than `intensity` restarts within period_ms (or the record cannot be grown, which
 * is treated the same way: giving up is the safe answer). */
static int sup_note_restart(sup_state *s)
{
    uint64_t now = sup_now_ms();
    int kept = 0;
    for (int i = 0; i < s->n_restarts; i++)
        if (now - s->restarts[i] < (uint64_t)s->period_ms)
            s->restarts[kept++] = s->restarts[i];
    s->n_restarts = kept;
    if (kept + 1 > s->intensity)
        return 0;
    if (kept == s->cap_restarts) {
        int cap = s->cap_restarts ? s->cap_restarts * 2 : 4;
        uint64_t *r = tr_realloc(s->restarts, (size_t)cap * sizeof *r);
        if (!r)
            return 0;
        s->restarts = r;
        s->cap_restarts = cap;
    }
    s->restarts[s->n_restarts++] = now;
    return 1;
}

/* Marks child j, a sibling caught in the restart of a group, to be stopped and
 * started again. A temporary sibling is stopped and deleted, as in OTP. */
static void sup_mark_sibling(sup_child *c)
{
    if (c->deleted)
        return;
    if (c->pid)
        c->to_stop = 1;
    if (c->spec.restart == TR_TEMPORARY)
        c->deleted = 1;
    else
        c->to_start = 1;
}

/* Child i must be restarted: mark what the strategy stops and restarts. */
static void sup_plan_restart(sup_state *s, int i)
{
    s->children[i].to_start = 1;
    if (s->strategy == TR_ONE_FOR_ALL) {
        for (int j = 0; j < s->n; j++)
            if (j != i)
                sup_mark_sibling(&s->children[j]);
    } else if (s->strategy == TR_REST_FOR_ONE) {
        for (int j = i + 1; j < s->n; j++)
            sup_mark_sibling(&s->children[j]);
    }
}

/* From now on: stop every child (highest first), then exit with reason. */
static void sup_begin_shutdown(sup_state *s, int reason)
{
    if (s->shutting_down)
        return;
    s->shutting_down = 1;
    s->exit_reason = reason;
    for (int i = 0; i < s->n; i++) {
        s->children[i].to_start = 0;
        if (s->children[i].pid && !s->children[i].stopping)
            s->children[i].to_stop = 1;
    }
}

/*
 * Moves the machine forward: if a stop is awaited, waits; else stops the next child
 * marked to_stop (highest index first); else, shutting down, exits; else starts the
 * children marked to_start, in order.
 *
 * A child that fails to start is handled like a crash of that child: it counts as a
 * restart toward the intensity (so a child that keeps failing ends in the supervisor
 * giving up) and the strategy applies again. The retry goes through a KICK message
 * to itself, so that messages already queued (a shutdown, a call) are seen between
 * attempts; if that message cannot be sent, it retries at once (still bounded by the
 * intensity). TR_ESTOPPED (the runtime is stopping) ends in a shutdown at once.
 */
static void sup_advance(tr_ctx *ctx, sup_state *s)
{
again:
    if (s->exited)
        return;
    for (int i = 0; i < s->n; i++)
        if (s->children[i].stopping)
            return;
    for (int i = s->n - 1; i >= 0; i--) {
        sup_child *c = &s->children[i];
        if (c->to_stop && c->pid) {
            sup_stop_child(ctx, c);
            return;
        }
        c->to_stop = 0;
    }
    if (s->shutting_down) {
        s->exited = 1;
        tr_exit(ctx, s->exit_reason);
        return;
    }
    for (int i = 0; i < s->n; i++) {
        sup_child *c = &s->children[i];
        if (!c->to_start)
            continue;
        if (c->pid) {           /* still running: nothing to start */
            c->to_start = 0;
            continue;
        }
        int rc = sup_start_child(ctx, c);
        if (rc == 0)
            continue;
        if (rc == TR_ESTOPPED || !sup_note_restart(s)) {
            sup_begin_shutdown(s, TR_EXIT_SHUTDOWN);
            goto again;
        }
        sup_plan_restart(s, i);
        if (tr_send(tr_ctx_runtime(ctx), tr_self(ctx), SUP_TAG_KICK, NULL, 0) < 0)
            goto again;
        return;
    }
}

/* Child c, being stopped, is gone: the stop is over. */
static void sup_stop_done(tr_ctx *ctx, sup_state *s, sup_child *c)
{
    c->pid = 0;
    c->stopping = 0;
    c->monitored = 0;
    if (c->has_timer) {
        tr_timer_cancel(tr_ctx_runtime(ctx), c->timer);
        c->has_timer = 0;
    }
    sup_advance(ctx, s);
}

/* An EXIT from child i, with reason. */
static void sup_child_exited(tr_ctx *ctx, sup_state *s, int i, int reason)
{
    sup_child *c = &s->children[i];
    if (c->stopping) {
        if (!c->monitored)
            sup_stop_done(ctx, s, c);
        return;                 /* the DOWN follows: it ends the stop */
    }
    c->pid = 0;
    if (c->to_stop || s->shutting_down) {
        c->to_stop = 0;         /* died while about to be stopped: not a crash */
    } else {
        int restart = c->spec.restart == TR_PERMANENT ||
            (c->spec.restart == TR_TRANSIENT && reason != TR_EXIT_NORMAL &&
             reason != TR_EXIT_SHUTDOWN);
        if (!restart) {
            if (c->spec.restart == TR_TEMPORARY)
                c->deleted = 1;
        } else if (!sup_note_restart(s)) {
            sup_begin_shutdown(s, TR_EXIT_SHUTDOWN);
        } else {
            sup_plan_restart(s, i);
        }
    }
    sup_advance(ctx, s);
}

static tr_pid sup_find(const sup_state *s, const char *id, size_t len)
{
    for (int i = 0; i < s->n; i++)
        if (strlen(s->children[i].id) == len && memcmp(s->children[i].id, id, len) == 0)
            return s->children[i].pid;
    return 0;
}

/* init: arg is a sup_start. Copies the spec and starts every child in order; if one
 * fails, the ones started are stopped (highest first) and init fails. It cannot wait
 * for their EXITs (it runs inside tr_spawn), so a child that traps exits, which could
 * ignore SHUTDOWN, is sent KILL instead: tr_supervisor_start leaves nothing behind. */
static int sup_init(tr_ctx *ctx, void *arg, void **state)
{
    sup_start *start = arg;
    sup_state *s = sup_state_new(start);
    int i = 0;
    if (!s) {
        start->err = TR_ENOMEM;
        goto err;
    }
    for (i = 0; i < s->n; i++) {
        int rc = sup_start_child(ctx, &s->children[i]);
        if (rc < 0) {
            start->err = rc == TR_ENOMEM || rc == TR_ESTOPPED ? rc : TR_EFAIL;
            goto err;
        }
    }
    *state = s;
    return 0;
err:
    while (s && --i >= 0) {
        sup_child *c = &s->children[i];
        tr_kill(tr_ctx_runtime(ctx), c->pid,
                c->spec.opts.trap_exit || c->spec.shutdown_ms == 0 ? TR_EXIT_KILL
                                                                   : TR_EXIT_SHUTDOWN);
    }
    sup_state_free(tr_ctx_runtime(ctx), s);
    return TR_EFAIL;
}

static int sup_receive(tr_ctx *ctx, void *state, tr_msg *msg)
{
    sup_state *s = state;
    tr_runtime *rt = tr_ctx_runtime(ctx);

    switch (msg->kind) {
    case TR_MSG_EXIT:
        for (int i = 0; msg->from && i < s->n; i++)
            if (s->children[i].pid == msg->from) {
                sup_child_exited(ctx, s, i, msg->status);
                return 0;
            }
        if (msg->from == 0 || msg->from == s->parent) {
            sup_begin_shutdown(s, msg->status);
            sup_advance(ctx, s);
        }
        return 0;
    case TR_MSG_DOWN:
        for (int i = 0; i < s->n; i++) {
            sup_child *c = &s->children[i];
            if (c->stopping && c->monitored && c->mon_ref == msg->ref) {
                sup_stop_done(ctx, s, c);
                break;
            }
        }
        return 0;
    case TR_MSG_CALL: {
        tr_pid pid = 0;
        if (msg->tag == SUP_TAG_WHICH)
            pid = sup_find(s, msg->data, msg->size);
        tr_reply(rt, msg, msg->tag, &pid, sizeof pid);
        return 0;
    }
    case TR_MSG_USER:
        if (msg->from != tr_self(ctx))
            return 0;
        if (msg->tag == SUP_TAG_TIMEOUT && msg->size == sizeof(tr_pid)) {
            tr_pid pid;
            memcpy(&pid, msg->data, sizeof pid);
            for (int i = 0; pid && i < s->n; i++)
                if (s->children[i].pid == pid && s->children[i].stopping) {
                    s->children[i].has_timer = 0;
                    tr_kill(rt, pid, TR_EXIT_KILL);
                }
        } else if (msg->tag == SUP_TAG_KICK) {
            sup_advance(ctx, s);
        }
        return 0;
    default:
        return 0;
    }
}

static void sup_terminate(tr_ctx *ctx, void *state, int reason)
{
    sup_state *st = state;
    if (st->arg_free)
        for (int i = 0; i < st->n; i++)
            st->arg_free(st->children[i].spec.arg);
    (void)reason;
    sup_state_free(tr_ctx_runtime(ctx), state);
}

static const tr_behaviour sup_behaviour = {
    "supervisor", sup_init, sup_receive, sup_terminate
};

static int sup_spec_valid(const tr_sup_spec *spec)
{
    if (!spec || spec->n_children < 0 || (spec->n_children > 0 && !spec->children) ||
        spec->intensity < 0 || spec->period_ms <= 0 ||
        (spec->strategy != TR_ONE_FOR_ONE && spec->strategy != TR_ONE_FOR_ALL &&
         spec->strategy != TR_REST_FOR_ONE))
        return 0;
    for (int i = 0; i < spec->n_children; i++) {
        const tr_child_spec *c = &spec->children[i];
        if (!c->id || !c->behaviour ||
            (c->restart != TR_PERMANENT && c->restart != TR_TRANSIENT &&
             c->restart != TR_TEMPORARY))
            return 0;
        for (int j = 0; j < i; j++)
            if (strcmp(spec->children[j].id, c->id) == 0)
                return 0;
    }
    return 1;
}

/*
 * Spawns a supervisor with opts (may be NULL; trap_exit is forced on; opts->link,
 * if set, is its parent: the parent's exit stops it), which copies spec (the caller
 * keeps it) and starts the children in order, each linked to it. Returns 0 and sets *pid; TR_EINVAL for a bad spec
 * (unknown strategy or restart type, NULL id or behaviour, duplicate ids,
 * intensity < 0, period_ms <= 0); TR_EFAIL if a child fails to start (those already
 * started are stopped); TR_ENOMEM; or tr_spawn's own errors (TR_ESTOPPED, ...).
 */
int tr_supervisor_start(tr_runtime *rt, const tr_sup_spec *spec,
                        const tr_spawn_opts *opts, tr_pid *pid)
{
    if (!rt || !pid || !sup_spec_valid(spec))
        return TR_EINVAL;
    tr_spawn_opts o = TR_SPAWN_OPTS_INIT;
    if (opts)
        o = *opts;
    o.trap_exit = 1;
    sup_start start = { spec, o.link, 0 };
    int rc = tr_spawn(rt, &sup_behaviour, &start, &o, pid);
    if (rc == TR_EFAIL && start.err)
        rc = start.err;
    if (rc < 0 && spec->arg_free)   /* no terminate ran: the args are freed here */
        for (int i = 0; i < spec->n_children; i++)
            spec->arg_free(spec->children[i].arg);
    return rc;
}

/*
 * Returns the current pid of child id under supervisor sup, or 0 (no such child, not
 * running now, sup gone, or called from a worker thread: it is a tr_call_sync, so
 * an actor cannot use it, the supervisor least of all).
 */
tr_pid tr_supervisor_child(tr_runtime *rt, tr_pid sup, const char *id)
{
    if (!rt || !sup || !id)
        return 0;
    tr_msg *reply = NULL;
    tr_pid pid = 0;
    if (tr_call_sync(rt, sup, SUP_TAG_WHICH, id, strlen(id), -1, &reply) != 0)
        return 0;
    if (reply && reply->status == 0 && reply->size == sizeof pid)
        memcpy(&pid, reply->data, sizeof pid);
    tr_msg_free(reply);
    return pid;
}
