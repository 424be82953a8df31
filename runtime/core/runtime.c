/*
 * runtime.c — the runtime's lifecycle: configuration, workers, graceful stop.
 */
#include <string.h>
#include <unistd.h>

#include "internal.h"

void tr_config_init(tr_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
}

static void config_defaults(tr_config *cfg)
{
    if (cfg->workers <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        cfg->workers = n > 0 ? (int)n : 1;
    }
    if (cfg->workers > 256)
        cfg->workers = 256;
    if (cfg->max_actors == 0)
        cfg->max_actors = 16u << 20;
    if (cfg->turn_budget == 0)
        cfg->turn_budget = 128;
}

int tr_runtime_new(const tr_config *cfg, tr_runtime **out)
{
    if (out == NULL)
        return TR_EINVAL;
    tr_runtime *rt = tr_malloc(sizeof(*rt));
    if (rt == NULL)
        return TR_ENOMEM;
    memset(rt, 0, sizeof(*rt));
    if (cfg)
        rt->cfg = *cfg;
    config_defaults(&rt->cfg);
    int rc = TR_ENOMEM, inited = 0;
    rt->n_workers = rt->cfg.workers;
    rt->workers = tr_malloc(sizeof(tr_worker) * (size_t)rt->n_workers);
    if (rt->workers == NULL)
        goto err;
    if ((rc = tr__table_init(rt)) < 0)
        goto err;
    if ((rc = tr__registry_init(rt)) < 0) {
        tr__table_close(rt);
        goto err;
    }
    for (; inited < rt->n_workers; inited++)
        if ((rc = tr__worker_init(rt, &rt->workers[inited], inited)) < 0)
            goto err_workers;
    if (pthread_mutex_init(&rt->stop_lock, NULL) != 0) {
        rc = TR_ESYS;
        goto err_workers;
    }
    if (pthread_cond_init(&rt->stop_cond, NULL) != 0) {
        pthread_mutex_destroy(&rt->stop_lock);
        rc = TR_ESYS;
        goto err_workers;
    }
    *out = rt;
    return 0;

err_workers:
    while (inited-- > 0)
        tr__worker_close(&rt->workers[inited]);
    tr__registry_close(rt);
    tr__table_close(rt);
err:
    tr_free(rt->workers);
    tr_free(rt);
    return rc;
}

int tr_runtime_start(tr_runtime *rt)
{
    if (rt->running || atomic_load(&rt->quit))
        return TR_ESTATE;
    for (int i = 0; i < rt->n_workers; i++) {
        int rc = tr__worker_start(&rt->workers[i]);
        if (rc < 0) {
            atomic_store(&rt->quit, 1);
            tr__wake_all(rt);
            for (int j = 0; j < i; j++)
                uv_thread_join(&rt->workers[j].thread);
            return rc;
        }
    }
    rt->running = 1;
    return 0;
}

void tr__actor_exited(tr_runtime *rt)
{
    atomic_fetch_add_explicit(&rt->exited, 1, memory_order_relaxed);
    if (atomic_fetch_sub(&rt->live, 1) == 1 && atomic_load(&rt->stopping)) {
        pthread_mutex_lock(&rt->stop_lock);
        pthread_cond_broadcast(&rt->stop_cond);
        pthread_mutex_unlock(&rt->stop_lock);
    }
}

int tr_runtime_stop(tr_runtime *rt, int deadline_ms)
{
    pthread_mutex_lock(&rt->stop_lock);
    if (atomic_load(&rt->stopping)) {
        pthread_mutex_unlock(&rt->stop_lock);
        return 0;
    }
    rt->deadline_ms = deadline_ms;
    rt->stop_at_ms = tr__now_ms() + (uint64_t)(deadline_ms < 0 ? 0 : deadline_ms);
    atomic_store(&rt->stopping, 1);
    pthread_cond_broadcast(&rt->stop_cond);
    pthread_mutex_unlock(&rt->stop_lock);

    /* Every live actor gets SHUTDOWN behind what is already in its mailbox. */
    uint32_t n = atomic_load_explicit(&rt->n_slots, memory_order_acquire);
    for (uint32_t i = 0; i < n; i++) {
        tr_actor *a = tr__slot(rt, i);
        if (tr__slot_live(a))
            tr__signal(rt, tr__pid_make(i, atomic_load(&a->gen)), TR__SIG_EXIT,
                       TR_PID_NONE, 0, TR_EXIT_SHUTDOWN);
    }
    return 0;
}

/* Terminates every actor still alive with KILLED (no worker may be running). */
static void kill_remaining(tr_runtime *rt)
{
    uint32_t n = atomic_load(&rt->n_slots);
    for (uint32_t i = 0; i < n; i++) {
        tr_actor *a = tr__slot(rt, i);
        if (tr__slot_live(a))
            tr__actor_finish(rt, a, TR_EXIT_KILLED, true);
    }
}

/* Waits until a stop was requested and every actor exited, or the deadline. */
static void wait_actors(tr_runtime *rt)
{
    pthread_mutex_lock(&rt->stop_lock);
    while (!atomic_load(&rt->stopping))
        pthread_cond_wait(&rt->stop_cond, &rt->stop_lock);
    while (atomic_load(&rt->live) > 0) {
        if (rt->deadline_ms < 0) {
            pthread_cond_wait(&rt->stop_cond, &rt->stop_lock);
            continue;
        }
        uint64_t now = tr__now_ms();
        if (now >= rt->stop_at_ms)
            break;
        /* Wake at least every 50 ms: the last exit's broadcast is the usual way out. */
        uint64_t ms = rt->stop_at_ms - now;
        if (ms > 50)
            ms = 50;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += (long)(ms * 1000000);
        ts.tv_sec += ts.tv_nsec / 1000000000;
        ts.tv_nsec %= 1000000000;
        pthread_cond_timedwait(&rt->stop_cond, &rt->stop_lock, &ts);
    }
    pthread_mutex_unlock(&rt->stop_lock);
}

int tr_runtime_wait(tr_runtime *rt)
{
    if (tr__cur_worker && tr__cur_worker->rt == rt)
        return TR_ESTATE;
    if (!rt->running)
        return 0;
    wait_actors(rt);
    atomic_store_explicit(&rt->quit, 1, memory_order_release);
    tr__wake_all(rt);
    for (int i = 0; i < rt->n_workers; i++)
        uv_thread_join(&rt->workers[i].thread);
    rt->running = 0;

    /* Past the deadline: what is still alive is killed here, no worker running. */
    kill_remaining(rt);
    return 0;
}

int tr_runtime_stopping(const tr_runtime *rt)
{
    if (atomic_load_explicit(&rt->quit, memory_order_relaxed))
        return 2;
    return atomic_load_explicit(&rt->stopping, memory_order_relaxed) ? 1 : 0;
}

int tr_runtime_run(tr_runtime *rt)
{
    int rc = tr_runtime_start(rt);
    if (rc < 0)
        return rc;
    return tr_runtime_wait(rt);
}

void tr_runtime_free(tr_runtime *rt)
{
    if (rt == NULL)
        return;
    if (rt->running) {
        tr_runtime_stop(rt, -1);
        tr_runtime_wait(rt);
    } else {
        atomic_store(&rt->stopping, 1);
        atomic_store(&rt->quit, 1);
        kill_remaining(rt);
    }
    for (int i = TR_EXT_MAX - 1; i >= 0; i--) {
        void *p = atomic_load(&rt->ext[i]);
        if (p && rt->ext_free[i])
            rt->ext_free[i](p);
    }
    for (int i = 0; i < rt->n_workers; i++)
        tr__worker_close(&rt->workers[i]);
    tr__registry_close(rt);
    tr__table_close(rt);
    pthread_cond_destroy(&rt->stop_cond);
    pthread_mutex_destroy(&rt->stop_lock);
    tr_free(rt->workers);
    tr_free(rt);
}

int tr_runtime_workers(const tr_runtime *rt)
{
    return rt->n_workers;
}

void tr_runtime_stats(tr_runtime *rt, tr_stats *out)
{
    memset(out, 0, sizeof(*out));
    out->actors_live = atomic_load(&rt->live);
    out->spawned = atomic_load(&rt->spawned);
    out->exited = atomic_load(&rt->exited);
    out->dropped = atomic_load(&rt->dropped);
    for (int i = 0; i < rt->n_workers; i++) {
        tr_worker *w = &rt->workers[i];
        out->delivered += atomic_load_explicit(&w->st_delivered, memory_order_relaxed);
        out->steals += atomic_load_explicit(&w->st_steals, memory_order_relaxed);
        out->turns += atomic_load_explicit(&w->st_turns, memory_order_relaxed);
        out->wakeups += atomic_load_explicit(&w->st_wakeups, memory_order_relaxed);
        out->timers += atomic_load_explicit(&w->st_timers, memory_order_relaxed);
    }
}

void *tr_runtime_ext(tr_runtime *rt, int slot)
{
    if (slot < 0 || slot >= TR_EXT_MAX)
        return NULL;
    return atomic_load_explicit(&rt->ext[slot], memory_order_acquire);
}

int tr_runtime_ext_set(tr_runtime *rt, int slot, void *p, void (*free_fn)(void *))
{
    if (slot < 0 || slot >= TR_EXT_MAX || p == NULL)
        return TR_EINVAL;
    pthread_mutex_lock(&rt->stop_lock);
    void *expected = NULL;
    int rc = TR_EEXIST;
    if (atomic_load(&rt->ext[slot]) == expected) {
        rt->ext_free[slot] = free_fn;
        atomic_store_explicit(&rt->ext[slot], p, memory_order_release);
        rc = 0;
    }
    pthread_mutex_unlock(&rt->stop_lock);
    return rc;
}

struct uv_loop_s *tr_worker_loop(tr_runtime *rt, int i)
{
    if (i < 0 || i >= rt->n_workers)
        return NULL;
    return &rt->workers[i].loop;
}

int tr_current_worker(const tr_runtime *rt)
{
    return tr__cur_worker && tr__cur_worker->rt == rt ? tr__cur_worker->id : -1;
}
