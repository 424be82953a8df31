/*
 * message.c — messages and the mailbox.
 *
 * The mailbox is Dmitry Vyukov's intrusive MPSC queue: producers exchange the head
 * and then link the previous node; the one consumer (the worker running the actor)
 * walks from the tail. Between a producer's exchange and its link the queue looks
 * shorter to the consumer; the producer then schedules the actor itself (it CASes
 * the state after linking), so the consumer may safely go idle.
 */
#include <string.h>

#include "internal.h"

#define LOAD(p)      __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define STORE(p, v)  __atomic_store_n((p), (v), __ATOMIC_RELEASE)

tr_msg *tr_msg_new(uint32_t tag, const void *data, size_t size)
{
    tr_msg *m = tr__msg_alloc(size);
    if (m == NULL)
        return NULL;
    m->tag = tag;
    if (size && data)
        memcpy(m->data, data, size);
    return m;
}

void tr_msg_free(tr_msg *msg)
{
    if (msg == NULL)
        return;
    if (msg->ptr && msg->ptr_free)
        msg->ptr_free(msg->ptr);
    tr__msg_release(msg);
}

/* Frees an undelivered message and counts it. */
void tr__msg_drop(tr_runtime *rt, tr_msg *m)
{
    if (m->kind < TR__MSG_SYSTEM)
        atomic_fetch_add_explicit(&rt->dropped, 1, memory_order_relaxed);
    tr_msg_free(m);
}

/* The stub is the actor's mb_stub field seen as a node: only the node's first field,
 * tr__next, is ever read or written through it. */
static inline tr_msg *stub_of(tr_actor *a)
{
    return (tr_msg *)(void *)&a->mb_stub;
}

void tr__mb_init(tr_actor *a)
{
    a->mb_stub = NULL;
    atomic_init(&a->mb_head, stub_of(a));
    a->mb_tail = stub_of(a);
    atomic_init(&a->mb_count, 0);
}

void tr__mb_push(tr_actor *a, tr_msg *m)
{
    __atomic_store_n(&m->tr__next, NULL, __ATOMIC_RELAXED);
    /* seq_cst: pairs with tr__mb_maybe_nonempty after an actor went idle. */
    tr_msg *prev = atomic_exchange_explicit(&a->mb_head, m, memory_order_seq_cst);
    __atomic_store_n(&prev->tr__next, m, __ATOMIC_RELEASE);
}

tr_msg *tr__mb_pop(tr_actor *a)
{
    tr_msg *stub = stub_of(a);
    tr_msg *tail = a->mb_tail;
    tr_msg *next = LOAD(&tail->tr__next);
    if (tail == stub) {
        if (next == NULL)
            return NULL;
        a->mb_tail = tail = next;
        next = LOAD(&next->tr__next);
    }
    if (next) {
        a->mb_tail = next;
        return tail;
    }
    if (tail != atomic_load_explicit(&a->mb_head, memory_order_acquire))
        return NULL; /* a producer is between its exchange and its link */
    tr__mb_push(a, stub);
    next = LOAD(&tail->tr__next);
    if (next) {
        a->mb_tail = next;
        return tail;
    }
    return NULL;
}

/* Owner only: nothing queued and no push in progress (the state in which an actor
 * may go idle: the head is back at the stub). */
bool tr__mb_quiet(tr_actor *a)
{
    tr_msg *stub = stub_of(a);
    return a->mb_tail == stub && LOAD(&stub->tr__next) == NULL &&
           atomic_load_explicit(&a->mb_head, memory_order_acquire) == stub;
}

/* Any thread, after the actor was published IDLE: could a message have arrived since
 * it was quiet? Reads only the head and the stub, which live in the actor itself
 * (type-stable), never the consumer's tail. A false positive costs one spurious
 * wake-up; a push after the IDLE store is seen here or sees IDLE (both seq_cst). */
bool tr__mb_maybe_nonempty(tr_actor *a)
{
    tr_msg *stub = stub_of(a);
    return atomic_load_explicit(&a->mb_head, memory_order_seq_cst) != stub ||
           __atomic_load_n(&stub->tr__next, __ATOMIC_SEQ_CST) != NULL;
}
