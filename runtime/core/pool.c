/*
 * pool.c — message blocks recycled per worker.
 *
 * Profile that justified it (perf, bench_actors oneway, 2 workers): _int_malloc 22%,
 * _int_free 20%, malloc_consolidate 2.4% — a message is allocated by the sender's
 * worker and freed by the receiver's, which defeats glibc's per-thread cache.
 *
 * Small messages come in three size classes. A worker keeps a free list per class;
 * a block freed on another worker is batched there and handed back to the worker
 * that allocated it, 64 at a time, with one CAS on that worker's return stack; the
 * owner takes the whole stack when its list runs dry. Every block is an ordinary
 * tr_malloc block, so a thread outside the runtime simply tr_frees it, and a block
 * can outlive the runtime. While a test injects allocation failures on a thread,
 * that thread bypasses the pool so every allocation is seen. tr_alloc_live counts a
 * cached block as not in use.
 */
#include <string.h>

#include "internal.h"

static const uint32_t class_size[TR__POOL_CLASSES] = { 128, 256, 512 };
#define LOCAL_MAX    4096   /* blocks kept per class per worker */
#define RETURN_BATCH 64

/* tr_msg.tr__pool: 0 for a plain block, else class + 1 in the top 4 bits and the
 * allocating worker + 1 below. */
static inline int block_class(const tr_msg *m) { return (m->tr__pool >> 12) - 1; }
static inline int block_owner(const tr_msg *m) { return (m->tr__pool & 0xFFF) - 1; }

static tr_worker *pool_worker(void)
{
    tr_worker *w = tr__cur_worker;
    return w && !tr__alloc_injecting() ? w : NULL;
}

tr_msg *tr__msg_alloc(size_t size)
{
    if (size > UINT32_MAX - sizeof(tr_msg))
        return NULL;
    size_t total = sizeof(tr_msg) + size;
    tr_worker *w = pool_worker();
    tr_msg *m = NULL;
    int c = 0;
    while (c < TR__POOL_CLASSES && total > class_size[c])
        c++;
    if (w && c < TR__POOL_CLASSES) {
        m = w->pool_local[c];
        if (m == NULL) {
            m = atomic_exchange_explicit(&w->pool_returned[c], NULL, memory_order_acquire);
            w->pool_local_n[c] = 0;   /* unknown length: the cap is approximate */
        }
        if (m) {
            w->pool_local[c] = m->tr__next;
            tr__alloc_note(+1);
        } else {
            m = tr_malloc(class_size[c]);
        }
    } else {
        c = TR__POOL_CLASSES;
        m = tr_malloc(total);
    }
    if (m == NULL)
        return NULL;
    memset(m, 0, sizeof(tr_msg));
    m->size = (uint32_t)size;
    if (w && c < TR__POOL_CLASSES) {
        if (w->pool_local_n[c])
            w->pool_local_n[c]--;
        m->tr__pool = (uint16_t)(((c + 1) << 12) | (w->id + 1));
    }
    return m;
}

static void return_batch(tr_worker *owner, int c, tr_msg *head, tr_msg *tail)
{
    tr_msg *top = atomic_load_explicit(&owner->pool_returned[c], memory_order_relaxed);
    do
        tail->tr__next = top;
    while (!atomic_compare_exchange_weak_explicit(&owner->pool_returned[c], &top, head,
                                                  memory_order_release,
                                                  memory_order_relaxed));
}

/* Frees a message block (not its pointer payload). */
void tr__msg_release(tr_msg *m)
{
    tr_worker *w = pool_worker();
    if (m->tr__pool == 0 || w == NULL) {
        tr_free(m);
        return;
    }
    int c = block_class(m), o = block_owner(m);
    if (o >= w->rt->n_workers || &w->rt->workers[o] == w) {
        if (w->pool_local_n[c] >= LOCAL_MAX) {
            tr_free(m);
            return;
        }
        m->tr__pool = (uint16_t)(((c + 1) << 12) | (w->id + 1));
        m->tr__next = w->pool_local[c];
        w->pool_local[c] = m;
        w->pool_local_n[c]++;
        tr__alloc_note(-1);
        return;
    }
    tr__alloc_note(-1);
    tr__pool_batch *b = &w->pool_pending[o * TR__POOL_CLASSES + c];
    m->tr__next = b->head;
    if (b->head == NULL)
        b->tail = m;
    b->head = m;
    if (++b->n >= RETURN_BATCH) {
        return_batch(&w->rt->workers[o], c, b->head, b->tail);
        b->head = b->tail = NULL;
        b->n = 0;
    }
}

/* Hands every pending batch back (before w sleeps, and when it stops). */
void tr__pool_flush(tr_worker *w)
{
    for (int o = 0; o < w->rt->n_workers; o++)
        for (int c = 0; c < TR__POOL_CLASSES; c++) {
            tr__pool_batch *b = &w->pool_pending[o * TR__POOL_CLASSES + c];
            if (b->head) {
                return_batch(&w->rt->workers[o], c, b->head, b->tail);
                b->head = b->tail = NULL;
                b->n = 0;
            }
        }
}

int tr__pool_init(tr_worker *w)
{
    size_t n = (size_t)w->rt->n_workers * TR__POOL_CLASSES;
    w->pool_pending = tr_malloc(sizeof(tr__pool_batch) * n);
    if (w->pool_pending == NULL)
        return TR_ENOMEM;
    memset(w->pool_pending, 0, sizeof(tr__pool_batch) * n);
    return 0;
}

static void free_chain(tr_msg *m)
{
    while (m) {
        tr_msg *next = m->tr__next;
        tr__alloc_note(+1);   /* a cached block: not counted as in use */
        tr_free(m);
        m = next;
    }
}

/* Frees every block w holds. No thread may use the pool any more. */
void tr__pool_close(tr_worker *w)
{
    for (int c = 0; c < TR__POOL_CLASSES; c++) {
        free_chain(w->pool_local[c]);
        free_chain(atomic_exchange(&w->pool_returned[c], NULL));
        w->pool_local[c] = NULL;
    }
    if (w->pool_pending) {
        for (int i = 0; i < w->rt->n_workers * TR__POOL_CLASSES; i++)
            free_chain(w->pool_pending[i].head);
        tr_free(w->pool_pending);
        w->pool_pending = NULL;
    }
}
