/*
 * signal.c — links, monitors and exit signals, with Erlang's semantics.
 *
 * Signals travel through the mailbox like messages (so the order between two actors
 * holds) but are handled by the runtime, not by receive: a link or monitor request
 * updates the target's tables; an exit signal kills the target unless it traps exits
 * (then it becomes a TR_MSG_EXIT) or the reason is NORMAL. KILL cannot be trapped.
 */
#include <sched.h>
#include <string.h>

#include "internal.h"

int tr__pids_add(tr_pid **v, uint32_t *n, uint32_t *cap, tr_pid p)
{
    for (uint32_t i = 0; i < *n; i++)
        if ((*v)[i] == p)
            return 0;
    if (*n == *cap) {
        uint32_t c = *cap ? *cap * 2 : 4;
        tr_pid *nv = tr_realloc(*v, sizeof(tr_pid) * c);
        if (nv == NULL)
            return TR_ENOMEM;
        *v = nv;
        *cap = c;
    }
    (*v)[(*n)++] = p;
    return 0;
}

bool tr__pids_remove(tr_pid *v, uint32_t *n, tr_pid p)
{
    for (uint32_t i = 0; i < *n; i++)
        if (v[i] == p) {
            v[i] = v[--*n];
            return true;
        }
    return false;
}

static int pidrefs_add(tr__pidref **v, uint32_t *n, uint32_t *cap, tr_pid p, uint64_t ref)
{
    if (*n == *cap) {
        uint32_t c = *cap ? *cap * 2 : 4;
        tr__pidref *nv = tr_realloc(*v, sizeof(tr__pidref) * c);
        if (nv == NULL)
            return TR_ENOMEM;
        *v = nv;
        *cap = c;
    }
    (*v)[*n].pid = p;
    (*v)[*n].ref = ref;
    ++*n;
    return 0;
}

/* Removes the entry with ref; its pid in *pid. */
static bool pidrefs_remove(tr__pidref *v, uint32_t *n, uint64_t ref, tr_pid *pid)
{
    for (uint32_t i = 0; i < *n; i++)
        if (v[i].ref == ref) {
            if (pid)
                *pid = v[i].pid;
            v[i] = v[--*n];
            return true;
        }
    return false;
}

static int signal_flags(tr_runtime *rt, tr_pid to, int kind, tr_pid from, uint64_t ref,
                        int32_t status, uint8_t flags)
{
    tr_msg *m = tr__msg_alloc(0);
    if (m == NULL)
        return TR_ENOMEM;
    m->tr__flags = flags;
    m->kind = (uint8_t)kind;
    m->from = from;
    m->ref = ref;
    m->status = status;
    return tr__deliver(rt, to, m);
}

/* Sends a header-only message of kind from `from`. 0, TR_ENOPROC or TR_ENOMEM. */
int tr__signal(tr_runtime *rt, tr_pid to, int kind, tr_pid from, uint64_t ref,
               int32_t status)
{
    return signal_flags(rt, to, kind, from, ref, status, 0);
}

static void exit_signal(tr_actor *a, tr_msg *m)
{
    int reason = m->status;
    if (reason == TR_EXIT_KILL) {
        tr__actor_set_exit(a, TR_EXIT_KILLED);
        tr_msg_free(m);
        return;
    }
    /* A linked actor died: the link is gone. (tr_kill from a linked actor, like
     * Erlang's exit/2, leaves the link in place.) */
    if (a->ext && (m->tr__flags & TR__MF_LINKED))
        tr__pids_remove(a->ext->links, &a->ext->n_links, m->from);
    if (a->flags & TR__AF_TRAP) {
        m->kind = TR_MSG_EXIT;
        tr__invoke(a, m);
        return;
    }
    if (reason != TR_EXIT_NORMAL)
        tr__actor_set_exit(a, reason);
    tr_msg_free(m);
}

void tr__handle_signal(tr_actor *a, tr_msg *m)
{
    tr_actor_ext *x;
    switch (m->kind) {
    case TR__SIG_EXIT:
        exit_signal(a, m);
        return;
    case TR__SIG_LINK:
        x = tr__ext(a);
        if (x == NULL || tr__pids_add(&x->links, &x->n_links, &x->cap_links, m->from) < 0)
            /* Cannot record the link: behave as if this actor were gone. */
            signal_flags(a->rt, m->from, TR__SIG_EXIT, a->self, 0, TR_EXIT_NOPROC,
                         TR__MF_LINKED);
        break;
    case TR__SIG_UNLINK:
        if (a->ext)
            tr__pids_remove(a->ext->links, &a->ext->n_links, m->from);
        break;
    case TR__SIG_MONITOR:
        x = tr__ext(a);
        if (x == NULL ||
            pidrefs_add(&x->watchers, &x->n_watchers, &x->cap_watchers, m->from, m->ref) < 0)
            /* Cannot record the monitor: the watcher gets its DOWN at once. */
            tr__signal(a->rt, m->from, TR_MSG_DOWN, a->self, m->ref, TR_EXIT_NOPROC);
        break;
    case TR__SIG_DEMONITOR:
        if (a->ext)
            pidrefs_remove(a->ext->watchers, &a->ext->n_watchers, m->ref, NULL);
        break;
    case TR_MSG_DOWN:
        /* Only monitors still held are delivered (none after tr_demonitor). */
        if (a->ext && pidrefs_remove(a->ext->watching, &a->ext->n_watching, m->ref, NULL)) {
            tr__invoke(a, m);
            return;
        }
        break;
    default:
        break;
    }
    tr_msg_free(m);
}

/* Tells links and monitors that a exited with reason (a->self is its last pid). */
void tr__notify_exit(tr_actor *a, int reason)
{
    tr_actor_ext *x = a->ext;
    if (x == NULL)
        return;
    int link_reason = reason == TR_EXIT_KILL ? TR_EXIT_KILLED : reason;
    for (uint32_t i = 0; i < x->n_links; i++)
        signal_flags(a->rt, x->links[i], TR__SIG_EXIT, a->self, 0, link_reason,
                     TR__MF_LINKED);
    x->n_links = 0;
    for (uint32_t i = 0; i < x->n_watchers; i++)
        tr__signal(a->rt, x->watchers[i].pid, TR_MSG_DOWN, a->self, x->watchers[i].ref,
                   reason);
    x->n_watchers = 0;
    /* Monitors this actor held: tell their targets to forget them. */
    for (uint32_t i = 0; i < x->n_watching; i++)
        tr__signal(a->rt, x->watching[i].pid, TR__SIG_DEMONITOR, a->self,
                   x->watching[i].ref, 0);
    x->n_watching = 0;
}

/*
 * Empties a dead actor's mailbox: callers get TR_EEXIT, late link and monitor
 * requests hear NOPROC, everything else is dropped and counted. The caller holds
 * the slot (state RUNNING, generation already moved on); on return the slot is DEAD
 * and quiet, or another thread took it over to sweep what arrived meanwhile (a
 * sender whose push raced with the exit, see tr__deliver). Pushes in progress are
 * waited for: they are a few instructions long.
 */
void tr__sweep_dead(tr_actor *a)
{
    tr_runtime *rt = a->rt;
    const tr_pid last = a->self;
    for (;;) {
        tr_msg *m;
        while ((m = tr__mb_pop(a)) != NULL) {
            if (m->tr__flags & TR__MF_COUNTED)
                atomic_fetch_sub_explicit(&a->mb_count, 1, memory_order_relaxed);
            switch (m->kind) {
            case TR_MSG_CALL:
                tr__reply_status(rt, m->tr__to, m->from, m->ref, TR_EEXIT);
                break;
            case TR__SIG_LINK:
                signal_flags(rt, m->from, TR__SIG_EXIT, last, 0, TR_EXIT_NOPROC,
                             TR__MF_LINKED);
                break;
            case TR__SIG_MONITOR:
                tr__signal(rt, m->from, TR_MSG_DOWN, last, m->ref, TR_EXIT_NOPROC);
                break;
            default:
                break;
            }
            tr__msg_drop(rt, m);
        }
        if (!tr__mb_quiet(a)) {
            sched_yield();
            continue;
        }
        atomic_store_explicit(&a->state, TR__DEAD, memory_order_seq_cst);
        if (!tr__mb_maybe_nonempty(a))
            return;
        uint32_t s = TR__DEAD;
        if (!atomic_compare_exchange_strong(&a->state, &s, TR__RUNNING))
            return;   /* a racing sender, or a new incarnation, has it now */
    }
}

/* ---- public ------------------------------------------------------------------------ */

int tr_link(tr_ctx *a, tr_pid pid)
{
    if (pid == a->self)
        return 0;
    tr_actor_ext *x = tr__ext(a);
    if (x == NULL)
        return TR_ENOMEM;
    int rc = tr__pids_add(&x->links, &x->n_links, &x->cap_links, pid);
    if (rc < 0)
        return rc;
    rc = tr__signal(a->rt, pid, TR__SIG_LINK, a->self, 0, 0);
    if (rc == TR_ENOPROC) {
        tr__pids_remove(x->links, &x->n_links, pid);
        return signal_flags(a->rt, a->self, TR__SIG_EXIT, pid, 0, TR_EXIT_NOPROC,
                            TR__MF_LINKED);
    }
    if (rc < 0)
        tr__pids_remove(x->links, &x->n_links, pid);
    return rc;
}

int tr_unlink(tr_ctx *a, tr_pid pid)
{
    if (a->ext == NULL || !tr__pids_remove(a->ext->links, &a->ext->n_links, pid))
        return 0;
    int rc = tr__signal(a->rt, pid, TR__SIG_UNLINK, a->self, 0, 0);
    return rc == TR_ENOPROC ? 0 : rc;
}

void tr_trap_exit(tr_ctx *a, int on)
{
    if (on)
        a->flags |= TR__AF_TRAP;
    else
        a->flags &= ~(uint32_t)TR__AF_TRAP;
}

int tr_monitor(tr_ctx *a, tr_pid pid, uint64_t *ref)
{
    tr_actor_ext *x = tr__ext(a);
    if (x == NULL)
        return TR_ENOMEM;
    uint64_t r = tr__new_ref();
    int rc = pidrefs_add(&x->watching, &x->n_watching, &x->cap_watching, pid, r);
    if (rc < 0)
        return rc;
    rc = tr__signal(a->rt, pid, TR__SIG_MONITOR, a->self, r, 0);
    if (rc == TR_ENOPROC)
        rc = tr__signal(a->rt, a->self, TR_MSG_DOWN, pid, r, TR_EXIT_NOPROC);
    if (rc < 0) {
        pidrefs_remove(x->watching, &x->n_watching, r, NULL);
        return rc;
    }
    if (ref)
        *ref = r;
    return 0;
}

int tr_demonitor(tr_ctx *a, uint64_t ref)
{
    tr_pid pid;
    if (a->ext == NULL || !pidrefs_remove(a->ext->watching, &a->ext->n_watching, ref, &pid))
        return 0;
    int rc = tr__signal(a->rt, pid, TR__SIG_DEMONITOR, a->self, ref, 0);
    return rc == TR_ENOPROC ? 0 : rc;
}

int tr_kill(tr_runtime *rt, tr_pid pid, int reason)
{
    return tr__signal(rt, pid, TR__SIG_EXIT, tr__current_pid(), 0, reason);
}
