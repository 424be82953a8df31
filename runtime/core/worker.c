/*
 * worker.c — one OS thread, one uv loop, and the run queues.
 *
 * Where a woken actor goes: an actor woken by code running on a worker goes to that
 * worker's LIFO slot (it runs next, while what the waker wrote is still in cache:
 * call/reply pairs stay on one core with no cross-thread traffic); the actor it
 * displaces moves to the worker's floating queue, which idle workers steal from.
 * Pinned actors go to their worker's pinned queue, never stolen. An actor that
 * spent its budget goes to the back of the queue. The LIFO slot is bypassed after
 * a streak of turns so a ping-pong pair cannot starve the queue.
 *
 * Sleeping: a worker with nothing to run, steal or poll marks itself sleeping, looks
 * at its queues once more, and blocks in uv_run(ONCE). Whoever queues work for it
 * claims the sleeping flag (exchange to 0) and sends its uv_async: one wake-up each.
 */
#include <string.h>

#include "internal.h"

#define BATCH_TURNS 256
#define LIFO_STREAK 32

static void push_tail(tr_actor **head, tr_actor **tail, tr_actor *a)
{
    a->run_next = NULL;
    if (*tail)
        (*tail)->run_next = a;
    else
        *head = a;
    *tail = a;
}

static tr_actor *pop_head(tr_actor **head, tr_actor **tail)
{
    tr_actor *a = *head;
    if (a) {
        *head = a->run_next;
        if (*head == NULL)
            *tail = NULL;
        a->run_next = NULL;
    }
    return a;
}

/* Sends the wake-up if w sleeps (and claims it, so it is sent once). */
void tr__worker_wake(tr_worker *w)
{
    if (atomic_load_explicit(&w->sleeping, memory_order_seq_cst) &&
        atomic_exchange(&w->sleeping, 0)) {
        atomic_fetch_sub(&w->rt->n_sleeping, 1);
        uv_async_send(&w->wake);
        atomic_store_explicit(&w->st_wakeups,
                              atomic_load_explicit(&w->st_wakeups, memory_order_relaxed) + 1,
                              memory_order_relaxed);
    }
}

void tr__wake_all(tr_runtime *rt)
{
    for (int i = 0; i < rt->n_workers; i++) {
        tr_worker *w = &rt->workers[i];
        if (w->started)
            uv_async_send(&w->wake);
    }
}

/* Work appeared in `from`'s stealable queue: wake one sleeping worker to take it. */
static void notify_idle(tr_runtime *rt, tr_worker *from)
{
    if (atomic_load_explicit(&rt->n_sleeping, memory_order_seq_cst) == 0)
        return;
    for (int i = 0; i < rt->n_workers; i++) {
        tr_worker *v = &rt->workers[i];
        if (v != from && atomic_load_explicit(&v->sleeping, memory_order_relaxed)) {
            tr__worker_wake(v);
            return;
        }
    }
}

static void push_floating(tr_worker *w, tr_actor *a)
{
    pthread_mutex_lock(&w->qlock);
    push_tail(&w->fq_head, &w->fq_tail, a);
    atomic_fetch_add_explicit(&w->fq_len, 1, memory_order_relaxed);
    pthread_mutex_unlock(&w->qlock);
}

static void push_pinned(tr_worker *w, tr_actor *a)
{
    pthread_mutex_lock(&w->qlock);
    push_tail(&w->pq_head, &w->pq_tail, a);
    atomic_store_explicit(&w->has_pinned_or_cmd, 1, memory_order_relaxed);
    pthread_mutex_unlock(&w->qlock);
}

/* Work was queued on self from self's own thread, which needs no wakeup, except
 * from a callback of the uv_run(UV_RUN_ONCE) the worker sleeps in: libuv runs the
 * timers that are due (and the prepare handles) *before* it computes how long to
 * poll, so a timer that came due just as the worker went to sleep would queue its
 * actor and then leave the worker blocked in epoll with nothing left to wake it.
 * uv_stop makes that poll return at once (the loop resets the flag on return). */
static void queued_locally(tr_worker *self)
{
    if (atomic_load_explicit(&self->sleeping, memory_order_relaxed))
        uv_stop(&self->loop);
}

/* a has just become QUEUED: put it where it will run. */
void tr__schedule(tr_runtime *rt, tr_actor *a)
{
    tr_worker *self = tr__cur_worker;
    if (self && self->rt != rt)
        self = NULL;
    if (a->pinned >= 0) {
        tr_worker *t = &rt->workers[a->pinned];
        push_pinned(t, a);
        if (t != self)
            tr__worker_wake(t);
        else
            queued_locally(self);
        return;
    }
    if (self) {
        tr_actor *old = self->lifo;
        self->lifo = a;
        if (old) {
            push_floating(self, old);
            notify_idle(rt, self);
        }
        queued_locally(self);
        return;
    }
    uint32_t i = atomic_fetch_add_explicit(&rt->rr, 1, memory_order_relaxed);
    tr_worker *t = &rt->workers[i % (uint32_t)rt->n_workers];
    push_floating(t, a);
    tr__worker_wake(t);
    notify_idle(rt, t);
}

/* a (QUEUED) goes to the back of w's queue, for fairness. */
void tr__requeue(tr_worker *w, tr_actor *a)
{
    if (a->pinned >= 0) {
        push_pinned(&w->rt->workers[a->pinned], a);
        if (a->pinned != w->id)
            tr__worker_wake(&w->rt->workers[a->pinned]);
        return;
    }
    push_floating(w, a);
    notify_idle(w->rt, w);
}

void tr__worker_command(tr_worker *w, tr__cmd *c)
{
    c->next = NULL;
    pthread_mutex_lock(&w->qlock);
    if (w->cmd_tail)
        w->cmd_tail->next = c;
    else
        w->cmd_head = c;
    w->cmd_tail = c;
    atomic_store_explicit(&w->has_pinned_or_cmd, 1, memory_order_relaxed);
    pthread_mutex_unlock(&w->qlock);
    if (tr__cur_worker != w)
        tr__worker_wake(w);
    else
        queued_locally(w);
}

static void run_commands(tr_worker *w, tr__cmd *c)
{
    while (c) {
        tr__cmd *next = c->next;
        switch (c->op) {
        case TR__CMD_TIMER_ADD:
            tr__timer_add_local(w, c->a, (tr_pid)c->b, c->msg, c->c, c->d, c->timer);
            break;
        case TR__CMD_TIMER_CANCEL:
            tr__timer_cancel_local(w, c->a);
            break;
        }
        tr_free(c);
        c = next;
    }
}

/* Runs the commands queued for w now (on w's thread). */
void tr__worker_run_commands(tr_worker *w)
{
    pthread_mutex_lock(&w->qlock);
    tr__cmd *cmds = w->cmd_head;
    w->cmd_head = w->cmd_tail = NULL;
    pthread_mutex_unlock(&w->qlock);
    run_commands(w, cmds);
}

/* Next actor to run on w, or NULL. */
static tr_actor *next_actor(tr_worker *w)
{
    tr_actor *a = w->lifo;
    if (a) {
        w->lifo = NULL;
        if (w->lifo_streak++ < LIFO_STREAK)
            return a;
        push_floating(w, a);
    }
    w->lifo_streak = 0;
    if (atomic_load_explicit(&w->fq_len, memory_order_relaxed) == 0 &&
        atomic_load_explicit(&w->has_pinned_or_cmd, memory_order_relaxed) == 0)
        return NULL;
    tr__cmd *cmds = NULL;
    pthread_mutex_lock(&w->qlock);
    a = pop_head(&w->pq_head, &w->pq_tail);
    if (a == NULL) {
        a = pop_head(&w->fq_head, &w->fq_tail);
        if (a)
            atomic_fetch_sub_explicit(&w->fq_len, 1, memory_order_relaxed);
    }
    if (w->cmd_head) {
        cmds = w->cmd_head;
        w->cmd_head = w->cmd_tail = NULL;
    }
    if (w->pq_head == NULL)
        atomic_store_explicit(&w->has_pinned_or_cmd, 0, memory_order_relaxed);
    pthread_mutex_unlock(&w->qlock);
    if (cmds)
        run_commands(w, cmds);
    return a;
}

/* Takes up to half of another worker's floating queue. Returns how many. */
static int steal(tr_worker *w)
{
    tr_runtime *rt = w->rt;
    for (int k = 1; k < rt->n_workers; k++) {
        tr_worker *v = &rt->workers[(w->id + k) % rt->n_workers];
        if (atomic_load_explicit(&v->fq_len, memory_order_relaxed) == 0)
            continue;
        tr_actor *head = NULL, *tail = NULL;
        int n = 0;
        pthread_mutex_lock(&v->qlock);
        uint32_t len = atomic_load_explicit(&v->fq_len, memory_order_relaxed);
        uint32_t take = (len + 1) / 2;
        for (uint32_t i = 0; i < take; i++) {
            tr_actor *a = pop_head(&v->fq_head, &v->fq_tail);
            if (a == NULL)
                break;
            push_tail(&head, &tail, a);
            n++;
        }
        atomic_fetch_sub_explicit(&v->fq_len, (uint32_t)n, memory_order_relaxed);
        pthread_mutex_unlock(&v->qlock);
        if (n == 0)
            continue;
        pthread_mutex_lock(&w->qlock);
        if (w->fq_tail)
            w->fq_tail->run_next = head;
        else
            w->fq_head = head;
        w->fq_tail = tail;
        atomic_fetch_add_explicit(&w->fq_len, (uint32_t)n, memory_order_relaxed);
        pthread_mutex_unlock(&w->qlock);
        atomic_store_explicit(&w->st_steals,
                              atomic_load_explicit(&w->st_steals, memory_order_relaxed) + (uint64_t)n,
                              memory_order_relaxed);
        return n;
    }
    return 0;
}

static bool has_work(tr_worker *w)
{
    pthread_mutex_lock(&w->qlock);
    bool work = w->fq_head || w->pq_head || w->cmd_head;
    pthread_mutex_unlock(&w->qlock);
    return work || w->lifo;
}

static void on_wake(uv_async_t *h)
{
    (void)h; /* its job was to end uv_run; the loop looks at the queues */
}

static void worker_main(void *arg)
{
    tr_worker *w = arg;
    tr_runtime *rt = w->rt;
    tr__cur_worker = w;
    while (!atomic_load_explicit(&rt->quit, memory_order_acquire)) {
        int turns = 0;
        tr_actor *a;
        while (turns < BATCH_TURNS && (a = next_actor(w)) != NULL) {
            tr__run_actor(w, a);
            turns++;
            if (atomic_load_explicit(&rt->quit, memory_order_relaxed)) {
                /* a is queued or idle again: the stopping thread finishes it. */
                break;
            }
        }
        atomic_store_explicit(&w->st_delivered, w->delivered, memory_order_relaxed);
        if (turns) {
            atomic_store_explicit(&w->st_turns,
                                  atomic_load_explicit(&w->st_turns, memory_order_relaxed) + (uint64_t)turns,
                                  memory_order_relaxed);
            uv_run(&w->loop, UV_RUN_NOWAIT);
            continue;
        }
        if (steal(w))
            continue;
        uv_run(&w->loop, UV_RUN_NOWAIT);
        if (w->lifo)
            continue;
        tr__pool_flush(w);   /* blocks freed here go home before a long sleep */
        atomic_store_explicit(&w->sleeping, 1, memory_order_seq_cst);
        atomic_fetch_add(&rt->n_sleeping, 1);
        if (has_work(w) || atomic_load(&rt->quit) || (rt->n_workers > 1 && steal(w) > 0)) {
            if (atomic_exchange(&w->sleeping, 0))
                atomic_fetch_sub(&rt->n_sleeping, 1);
            continue;
        }
        uv_run(&w->loop, UV_RUN_ONCE);
        if (atomic_exchange(&w->sleeping, 0))
            atomic_fetch_sub(&rt->n_sleeping, 1);
    }
    tr__pool_flush(w);
    tr__cur_worker = NULL;
}

int tr__worker_init(tr_runtime *rt, tr_worker *w, int id)
{
    memset(w, 0, sizeof(*w));
    w->rt = rt;
    w->id = id;
    if (tr__pool_init(w) < 0)
        return TR_ENOMEM;
    if (pthread_mutex_init(&w->qlock, NULL) != 0)
        goto err_pool;
    if (uv_loop_init(&w->loop) != 0)
        goto err_lock;
    if (uv_async_init(&w->loop, &w->wake, on_wake) != 0)
        goto err_loop;
    if (uv_timer_init(&w->loop, &w->timer) != 0)
        goto err_async;
    w->loop.data = w;
    w->timer.data = w;
    return 0;
err_async:
    uv_close((uv_handle_t *)&w->wake, NULL);
    uv_run(&w->loop, UV_RUN_DEFAULT);
err_loop:
    uv_loop_close(&w->loop);
err_lock:
    pthread_mutex_destroy(&w->qlock);
err_pool:
    tr__pool_close(w);
    return TR_ESYS;
}

int tr__worker_start(tr_worker *w)
{
    if (uv_thread_create(&w->thread, worker_main, w) != 0)
        return TR_ESYS;
    w->started = 1;
    return 0;
}

/* After the thread has been joined (or never started): frees what is left. */
void tr__worker_close(tr_worker *w)
{
    tr__timers_close(w);
    tr__cmd *c = w->cmd_head;
    while (c) {
        tr__cmd *next = c->next;
        tr_msg_free(c->msg);
        tr_free(c->timer);
        tr_free(c);
        c = next;
    }
    w->cmd_head = w->cmd_tail = NULL;
    uv_close((uv_handle_t *)&w->wake, NULL);
    uv_close((uv_handle_t *)&w->timer, NULL);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    uv_loop_close(&w->loop);
    pthread_mutex_destroy(&w->qlock);
    tr__pool_close(w);
}
