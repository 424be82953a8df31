/*
 * table.c — the actor table: slots addressed by pid index, in chunks of 1024 that
 * are allocated on demand and never freed while the runtime lives (type-stable
 * memory: a sender racing with an exit touches a recycled actor, never freed memory).
 * A pid is valid while its generation matches the slot's; an exit bumps it first.
 */
#include <string.h>

#include "internal.h"

int tr__table_init(tr_runtime *rt)
{
    rt->n_chunks_max = (rt->cfg.max_actors + TR__CHUNK_SIZE - 1) / TR__CHUNK_SIZE;
    rt->chunks = tr_malloc(sizeof(tr_actor *) * rt->n_chunks_max);
    rt->chunk_mem = tr_malloc(sizeof(void *) * rt->n_chunks_max);
    if (rt->chunks == NULL || rt->chunk_mem == NULL)
        goto err;
    memset(rt->chunks, 0, sizeof(tr_actor *) * rt->n_chunks_max);
    memset(rt->chunk_mem, 0, sizeof(void *) * rt->n_chunks_max);
    atomic_init(&rt->n_slots, 0);
    rt->free_slots = NULL;
    rt->n_free = rt->cap_free = 0;
    if (pthread_mutex_init(&rt->table_lock, NULL) != 0)
        goto err;
    return 0;
err:
    tr_free(rt->chunks);
    tr_free(rt->chunk_mem);
    return TR_ENOMEM;
}

void tr__table_close(tr_runtime *rt)
{
    uint32_t n = atomic_load(&rt->n_slots);
    for (uint32_t i = 0; i < n; i++) {
        tr_actor *a = tr__slot(rt, i);
        tr_msg *m;
        /* Messages that raced into a dead actor's mailbox after its exit. */
        while ((m = tr__mb_pop(a)) != NULL)
            tr__msg_drop(rt, m);
    }
    for (uint32_t c = 0; c < rt->n_chunks_max && rt->chunk_mem[c]; c++)
        tr_free(rt->chunk_mem[c]);
    tr_free(rt->chunks);
    tr_free(rt->chunk_mem);
    tr_free(rt->free_slots);
    pthread_mutex_destroy(&rt->table_lock);
}

/* Allocates chunk c, cache-line aligned, and readies its slots. table_lock held. */
static int chunk_new(tr_runtime *rt, uint32_t c)
{
    void *mem = tr_malloc(sizeof(tr_actor) * TR__CHUNK_SIZE + TR__CACHELINE);
    if (mem == NULL)
        return TR_ENOMEM;
    uintptr_t p = ((uintptr_t)mem + TR__CACHELINE - 1) & ~(uintptr_t)(TR__CACHELINE - 1);
    tr_actor *chunk = (tr_actor *)p;
    memset(chunk, 0, sizeof(tr_actor) * TR__CHUNK_SIZE);
    for (uint32_t i = 0; i < TR__CHUNK_SIZE; i++) {
        tr_actor *a = &chunk[i];
        a->index = c * TR__CHUNK_SIZE + i;
        a->rt = rt;
        atomic_init(&a->state, TR__DEAD);
        atomic_init(&a->gen, 1);
        tr__mb_init(a);
    }
    rt->chunk_mem[c] = mem;
    /* Publish: lookups that see n_slots cover this chunk (release in slot_alloc). */
    rt->chunks[c] = chunk;
    return 0;
}

/* Takes a free slot (a dead actor, its generation already bumped). The caller sets
 * it up and makes it live. 0, TR_ENOMEM or TR_ELIMIT. */
int tr__slot_alloc(tr_runtime *rt, tr_actor **out)
{
    int rc = 0;
    pthread_mutex_lock(&rt->table_lock);
    if (rt->n_free > 0) {
        *out = tr__slot(rt, rt->free_slots[--rt->n_free]);
        goto done;
    }
    uint32_t n = atomic_load_explicit(&rt->n_slots, memory_order_relaxed);
    if (n >= rt->cfg.max_actors) {
        rc = TR_ELIMIT;
        goto done;
    }
    if ((n & (TR__CHUNK_SIZE - 1)) == 0 && (rc = chunk_new(rt, n >> TR__CHUNK_SHIFT)) < 0)
        goto done;
    *out = tr__slot(rt, n);
    atomic_store_explicit(&rt->n_slots, n + 1, memory_order_release);
done:
    pthread_mutex_unlock(&rt->table_lock);
    return rc;
}

/* Returns a dead actor's slot to the free stack. If the stack cannot grow the slot is
 * leaked until the runtime is freed (never reused), which is safe. */
void tr__slot_release(tr_runtime *rt, tr_actor *a)
{
    pthread_mutex_lock(&rt->table_lock);
    if (rt->n_free == rt->cap_free) {
        uint32_t cap = rt->cap_free ? rt->cap_free * 2 : 1024;
        uint32_t *v = tr_realloc(rt->free_slots, sizeof(uint32_t) * cap);
        if (v == NULL)
            goto out;
        rt->free_slots = v;
        rt->cap_free = cap;
    }
    rt->free_slots[rt->n_free++] = a->index;
out:
    pthread_mutex_unlock(&rt->table_lock);
}

/* The live actor pid names, or NULL. The result may die at any moment: callers only
 * push to its mailbox (checked again by the consumer) or CAS its state. */
tr_actor *tr__lookup(tr_runtime *rt, tr_pid pid)
{
    uint32_t index = tr__pid_index(pid);
    if (pid == TR_PID_NONE ||
        index >= atomic_load_explicit(&rt->n_slots, memory_order_acquire))
        return NULL;
    tr_actor *a = tr__slot(rt, index);
    if (atomic_load_explicit(&a->gen, memory_order_acquire) != tr__pid_gen(pid) ||
        atomic_load_explicit(&a->state, memory_order_acquire) == TR__DEAD)
        return NULL;
    return a;
}
