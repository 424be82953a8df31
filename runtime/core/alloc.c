/* alloc.c — the runtime's allocator: malloc with a per-thread failure injector and
 * an optional live-block count, so tests can fail the Nth allocation of an operation
 * and check that it returns TR_ENOMEM and leaves nothing behind. Both checks cost one
 * predictable branch when unused. */
#include <stdatomic.h>
#include <stdlib.h>

#include "internal.h"

static _Thread_local long fail_countdown = -1;
static atomic_int  tracking;
static atomic_long live_blocks;

static int inject_failure(void)
{
    if (__builtin_expect(fail_countdown < 0, 1))
        return 0;
    if (fail_countdown == 0) {
        fail_countdown = -1;
        return 1;
    }
    fail_countdown--;
    return 0;
}

void *tr_malloc(size_t size)
{
    if (inject_failure())
        return NULL;
    void *p = malloc(size ? size : 1);
    if (p && atomic_load_explicit(&tracking, memory_order_relaxed))
        atomic_fetch_add_explicit(&live_blocks, 1, memory_order_relaxed);
    return p;
}

void *tr_realloc(void *ptr, size_t size)
{
    if (ptr == NULL)
        return tr_malloc(size);
    if (inject_failure())
        return NULL;
    return realloc(ptr, size ? size : 1);
}

void tr_free(void *ptr)
{
    if (ptr == NULL)
        return;
    if (atomic_load_explicit(&tracking, memory_order_relaxed))
        atomic_fetch_sub_explicit(&live_blocks, 1, memory_order_relaxed);
    free(ptr);
}

/* A cache (the message pool) took a block out of use (-1) or put it back (+1):
 * tr_alloc_live counts blocks in use, not blocks a cache keeps. */
void tr__alloc_note(long delta)
{
    if (atomic_load_explicit(&tracking, memory_order_relaxed))
        atomic_fetch_add_explicit(&live_blocks, delta, memory_order_relaxed);
}

/* A failure is armed on this thread: caches must step aside so it is reached. */
bool tr__alloc_injecting(void)
{
    return fail_countdown >= 0;
}

long tr_alloc_fail_after(long n)
{
    long before = fail_countdown;
    fail_countdown = n < 0 ? -1 : n;
    return before;
}

long tr_alloc_pending(void)
{
    return fail_countdown;
}

void tr_alloc_track(int on)
{
    atomic_store(&live_blocks, 0);
    atomic_store(&tracking, on != 0);
}

long tr_alloc_live(void)
{
    return atomic_load(&live_blocks);
}
