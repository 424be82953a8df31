/*
 * timer.c — send-after and periodic timers, and call timeouts.
 *
 * Each worker owns its timers: a binary min-heap by deadline, an id → timer map
 * (open addressing, backward-shift deletion) for cancels, and one uv_timer armed for
 * the earliest deadline. A timer set from the worker's own thread touches only that
 * worker's structures; from any other thread it travels as a command. The entry is
 * always allocated by the caller, so an out-of-memory is reported to the caller.
 */
#include <string.h>
#include <time.h>

#include "internal.h"

uint64_t tr__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- heap ---- */

static bool before(const tr__timer *a, const tr__timer *b)
{
    return a->deadline < b->deadline || (a->deadline == b->deadline && a->id < b->id);
}

static void heap_set(tr_worker *w, uint32_t i, tr__timer *t)
{
    w->heap[i] = t;
    t->heap_pos = i;
}

static void sift_up(tr_worker *w, uint32_t i)
{
    tr__timer *t = w->heap[i];
    while (i > 0) {
        uint32_t p = (i - 1) / 2;
        if (!before(t, w->heap[p]))
            break;
        heap_set(w, i, w->heap[p]);
        i = p;
    }
    heap_set(w, i, t);
}

static void sift_down(tr_worker *w, uint32_t i)
{
    tr__timer *t = w->heap[i];
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= w->n_heap)
            break;
        if (c + 1 < w->n_heap && before(w->heap[c + 1], w->heap[c]))
            c++;
        if (!before(w->heap[c], t))
            break;
        heap_set(w, i, w->heap[c]);
        i = c;
    }
    heap_set(w, i, t);
}

static void heap_remove(tr_worker *w, tr__timer *t)
{
    uint32_t i = t->heap_pos;
    tr__timer *last = w->heap[--w->n_heap];
    if (i == w->n_heap)
        return;
    heap_set(w, i, last);
    if (i > 0 && before(last, w->heap[(i - 1) / 2]))
        sift_up(w, i);
    else
        sift_down(w, i);
}

/* ---- id map ---- */

static uint32_t slot_of(const tr_worker *w, uint64_t id)
{
    return (uint32_t)((id * 0x9E3779B97F4A7C15ull) >> 32) & (w->map_cap - 1);
}

static tr__timer *map_get(tr_worker *w, uint64_t id)
{
    if (w->map_cap == 0)
        return NULL;
    for (uint32_t i = slot_of(w, id);; i = (i + 1) & (w->map_cap - 1)) {
        tr__timer *t = w->map[i];
        if (t == NULL || t->id == id)
            return t;
    }
}

static void map_put_nogrow(tr_worker *w, tr__timer *t)
{
    uint32_t i = slot_of(w, t->id);
    while (w->map[i])
        i = (i + 1) & (w->map_cap - 1);
    w->map[i] = t;
    w->map_used++;
}

static int map_reserve(tr_worker *w)
{
    if ((w->map_used + 1) * 2 <= w->map_cap)
        return 0;
    uint32_t cap = w->map_cap ? w->map_cap * 2 : 64;
    tr__timer **old = w->map;
    uint32_t old_cap = w->map_cap;
    tr__timer **m = tr_malloc(sizeof(*m) * cap);
    if (m == NULL)
        return TR_ENOMEM;
    memset(m, 0, sizeof(*m) * cap);
    w->map = m;
    w->map_cap = cap;
    w->map_used = 0;
    for (uint32_t i = 0; i < old_cap; i++)
        if (old[i])
            map_put_nogrow(w, old[i]);
    tr_free(old);
    return 0;
}

static void map_del(tr_worker *w, uint64_t id)
{
    uint32_t mask = w->map_cap - 1, i = slot_of(w, id);
    while (w->map[i] && w->map[i]->id != id)
        i = (i + 1) & mask;
    if (w->map[i] == NULL)
        return;
    w->map[i] = NULL;
    w->map_used--;
    /* Backward shift: move later entries of the run into the hole when allowed. */
    for (uint32_t j = (i + 1) & mask; w->map[j]; j = (j + 1) & mask) {
        uint32_t home = slot_of(w, w->map[j]->id);
        if (((j - home) & mask) >= ((j - i) & mask)) {
            w->map[i] = w->map[j];
            w->map[j] = NULL;
            i = j;
        }
    }
}

/* Takes t out of w's heap and map and frees it; its message goes with it unless
 * the caller took it. */
static void timer_remove(tr_worker *w, tr__timer *t)
{
    heap_remove(w, t);
    map_del(w, t->id);
    tr_msg_free(t->msg);
    tr_free(t);
}

/* ---- arming and firing ---- */

static void on_timer(uv_timer_t *h);

static void arm(tr_worker *w)
{
    atomic_store_explicit(&w->st_timers, w->n_heap, memory_order_relaxed);
    if (w->n_heap == 0) {
        uv_timer_stop(&w->timer);
        return;
    }
    uint64_t now = tr__now_ms(), d = w->heap[0]->deadline;
    uv_update_time(&w->loop);
    uv_timer_start(&w->timer, on_timer, d > now ? d - now : 0, 0);
}

static void on_timer(uv_timer_t *h)
{
    tr_worker *w = h->data;
    uint64_t now = tr__now_ms();
    while (w->n_heap && w->heap[0]->deadline <= now) {
        tr__timer *t = w->heap[0];
        if (t->period) {
            tr_msg *copy = tr__msg_alloc(t->msg->size);
            if (copy) {
                uint16_t pool = copy->tr__pool;
                memcpy(copy, t->msg, sizeof(tr_msg) + t->msg->size);
                copy->tr__pool = pool;
                if (tr__deliver(w->rt, t->to, copy) == TR_ENOPROC) {
                    timer_remove(w, t);   /* its target is gone: it ends with it */
                    continue;
                }
            }
            t->deadline += t->period;
            if (t->deadline <= now)   /* fell behind: skip, do not burst */
                t->deadline = now + t->period;
            sift_down(w, 0);
        } else {
            tr_msg *m = t->msg;
            tr_pid to = t->to;
            t->msg = NULL;
            timer_remove(w, t);
            tr__deliver(w->rt, to, m);
        }
    }
    arm(w);
}

/* Links t (allocated by the caller) into w's structures, or drops it. */
void tr__timer_add_local(tr_worker *w, uint64_t id, tr_pid to, tr_msg *m,
                         uint64_t deadline, uint64_t period, tr__timer *t)
{
    t->id = id;
    t->to = to;
    t->msg = m;
    t->deadline = deadline;
    t->period = period;
    if (w->n_heap == w->cap_heap) {
        uint32_t cap = w->cap_heap ? w->cap_heap * 2 : 64;
        tr__timer **h = tr_realloc(w->heap, sizeof(*h) * cap);
        if (h == NULL)
            goto drop;
        w->heap = h;
        w->cap_heap = cap;
    }
    if (map_reserve(w) < 0)
        goto drop;
    map_put_nogrow(w, t);
    w->heap[w->n_heap] = t;
    t->heap_pos = w->n_heap++;
    sift_up(w, t->heap_pos);
    if (w->heap[0] == t)
        arm(w);
    else
        atomic_store_explicit(&w->st_timers, w->n_heap, memory_order_relaxed);
    return;
drop:
    tr__msg_drop(w->rt, m);
    tr_free(t);
}

int tr__timer_cancel_local(tr_worker *w, uint64_t id)
{
    tr__timer *t = map_get(w, id);
    if (t == NULL)
        return TR_ENOPROC;
    bool was_first = w->heap[0] == t;
    timer_remove(w, t);
    if (was_first)
        arm(w);
    else
        atomic_store_explicit(&w->st_timers, w->n_heap, memory_order_relaxed);
    return 0;
}

void tr__timers_close(tr_worker *w)
{
    for (uint32_t i = 0; i < w->n_heap; i++) {
        tr_msg_free(w->heap[i]->msg);
        tr_free(w->heap[i]);
    }
    tr_free(w->heap);
    tr_free(w->map);
    w->heap = NULL;
    w->map = NULL;
    w->n_heap = w->cap_heap = w->map_cap = w->map_used = 0;
    atomic_store_explicit(&w->st_timers, 0, memory_order_relaxed);
}

static tr_worker *timer_worker(tr_runtime *rt, uint64_t id)
{
    uint64_t wi = (id >> 48);
    if (wi == 0 || wi > (uint64_t)rt->n_workers)
        return NULL;
    return &rt->workers[wi - 1];
}

/* Takes ownership of m (also on failure). The timer belongs to the calling worker,
 * or, from another thread, to a worker chosen round robin. */
int tr__timer_add(tr_runtime *rt, tr_pid to, tr_msg *m, uint64_t ms, uint64_t period,
                  uint64_t *id)
{
    tr_worker *w = tr__cur_worker;
    bool local = w && w->rt == rt;
    if (!local)
        w = &rt->workers[atomic_fetch_add(&rt->rr, 1) % (uint32_t)rt->n_workers];
    tr__timer *t = tr_malloc(sizeof(*t));
    tr__cmd *c = local ? NULL : tr_malloc(sizeof(*c));
    if (t == NULL || (!local && c == NULL)) {
        tr_free(t);
        tr_free(c);
        tr_msg_free(m);
        return TR_ENOMEM;
    }
    uint64_t tid = ((uint64_t)(w->id + 1) << 48) |
                   (atomic_fetch_add_explicit(&w->timer_seq, 1, memory_order_relaxed) + 1);
    uint64_t deadline = tr__now_ms() + ms;
    if (id)
        *id = tid;
    if (local) {
        tr__timer_add_local(w, tid, to, m, deadline, period, t);
        return 0;
    }
    c->op = TR__CMD_TIMER_ADD;
    c->a = tid;
    c->b = to;
    c->c = deadline;
    c->d = period;
    c->msg = m;
    c->timer = t;
    tr__worker_command(w, c);
    return 0;
}

static int add_user_timer(tr_runtime *rt, tr_pid to, uint32_t tag, const void *data,
                          size_t size, uint64_t ms, uint64_t period, uint64_t *timer)
{
    if (atomic_load(&rt->stopping))
        return TR_ESTOPPED;
    tr_msg *m = tr_msg_new(tag, data, size);
    if (m == NULL)
        return TR_ENOMEM;
    m->from = tr__current_pid();
    return tr__timer_add(rt, to, m, ms, period, timer);
}

int tr_send_after(tr_runtime *rt, tr_pid to, uint32_t tag, const void *data,
                  size_t size, uint64_t ms, uint64_t *timer)
{
    return add_user_timer(rt, to, tag, data, size, ms, 0, timer);
}

int tr_send_every(tr_runtime *rt, tr_pid to, uint32_t tag, const void *data,
                  size_t size, uint64_t ms, uint64_t *timer)
{
    if (ms == 0)
        return TR_EINVAL;
    return add_user_timer(rt, to, tag, data, size, ms, ms, timer);
}

int tr_timer_cancel(tr_runtime *rt, uint64_t timer)
{
    tr_worker *w = timer_worker(rt, timer);
    if (w == NULL)
        return TR_ENOPROC;
    if (tr__cur_worker == w) {
        /* The timer may have been set from another thread and still be on its way
         * here as a command: take those in first. */
        if (map_get(w, timer) == NULL)
            tr__worker_run_commands(w);
        return tr__timer_cancel_local(w, timer);
    }
    tr__cmd *c = tr_malloc(sizeof(*c));
    if (c == NULL)
        return TR_ENOMEM;
    memset(c, 0, sizeof(*c));
    c->op = TR__CMD_TIMER_CANCEL;
    c->a = timer;
    tr__worker_command(w, c);
    return 0;
}
