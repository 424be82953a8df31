/* test_mailbox.c — the MPSC mailbox under concurrent producers, directly and
 * through actors, and bounded mailboxes. */
#include <pthread.h>

#include "harness.h"
#include "internal.h"

#define PRODUCERS 4
#define PER_PRODUCER 200000

typedef struct { tr_actor *a; int id; } producer_arg;
static atomic_int producers_done;

static void *producer(void *p)
{
    producer_arg *arg = p;
    for (uint32_t i = 0; i < PER_PRODUCER; i++) {
        tr_msg *m = tr_msg_new((uint32_t)arg->id, &i, sizeof i);
        assert_non_null(m);
        tr__mb_push(arg->a, m);
    }
    atomic_fetch_add(&producers_done, 1);
    return NULL;
}

/* Producers push straight into one mailbox while this thread pops: every message
 * arrives once, in each producer's order. */
static void test_mpsc_direct(void **state)
{
    (void)state;
    static _Alignas(64) tr_actor a;
    memset(&a, 0, sizeof a);
    tr__mb_init(&a);
    atomic_store(&producers_done, 0);
    pthread_t t[PRODUCERS];
    producer_arg args[PRODUCERS];
    for (int i = 0; i < PRODUCERS; i++) {
        args[i] = (producer_arg){ &a, i };
        pthread_create(&t[i], NULL, producer, &args[i]);
    }
    uint32_t next[PRODUCERS] = { 0 };
    long total = 0;
    while (total < (long)PRODUCERS * PER_PRODUCER) {
        tr_msg *m = tr__mb_pop(&a);
        if (m == NULL)
            continue;
        uint32_t seq;
        memcpy(&seq, m->data, sizeof seq);
        assert_int_equal(seq, next[m->tag]);
        next[m->tag]++;
        total++;
        tr_msg_free(m);
    }
    for (int i = 0; i < PRODUCERS; i++)
        pthread_join(t[i], NULL);
    assert_null(tr__mb_pop(&a));
    assert_true(tr__mb_quiet(&a));
    assert_false(tr__mb_maybe_nonempty(&a));
    for (int i = 0; i < PRODUCERS; i++)
        assert_int_equal(next[i], PER_PRODUCER);
}

/* The same through the runtime: foreign threads tr_send to one actor. */
typedef struct { uint32_t next[PRODUCERS]; atomic_long got; atomic_int bad; } order_state;

static int order_init(tr_ctx *ctx, void *arg, void **st) { (void)ctx; *st = arg; return 0; }
static int order_receive(tr_ctx *ctx, void *st, tr_msg *m)
{
    (void)ctx;
    order_state *s = st;
    uint32_t seq;
    memcpy(&seq, m->data, sizeof seq);
    if (seq != s->next[m->tag])
        atomic_fetch_add(&s->bad, 1);
    s->next[m->tag] = seq + 1;
    atomic_fetch_add(&s->got, 1);
    return 0;
}
static const tr_behaviour order_b = { "order", order_init, order_receive, NULL };

typedef struct { tr_runtime *rt; tr_pid to; int id; } sender_arg;
static void *sender_thread(void *p)
{
    sender_arg *s = p;
    for (uint32_t i = 0; i < PER_PRODUCER / 4; i++)
        assert_int_equal(tr_send(s->rt, s->to, (uint32_t)s->id, &i, sizeof i), 0);
    return NULL;
}

static void test_concurrent_senders(void **state)
{
    (void)state;
    tr_runtime *rt = th_runtime(2);
    static order_state os;
    memset(&os, 0, sizeof os);
    tr_pid pid;
    assert_int_equal(tr_spawn(rt, &order_b, &os, NULL, &pid), 0);
    pthread_t t[PRODUCERS];
    sender_arg args[PRODUCERS];
    for (int i = 0; i < PRODUCERS; i++) {
        args[i] = (sender_arg){ rt, pid, i };
        pthread_create(&t[i], NULL, sender_thread, &args[i]);
    }
    for (int i = 0; i < PRODUCERS; i++)
        pthread_join(t[i], NULL);
    long want = (long)PRODUCERS * (PER_PRODUCER / 4);
    assert_true(TH_WAIT_UNTIL(atomic_load(&os.got) == want, 20000));
    assert_int_equal(atomic_load(&os.bad), 0);
    th_finish(rt);
}

/* A bounded mailbox refuses sends beyond its length with TR_EOVERLOAD, and accepts
 * again once the actor has caught up. */
static atomic_int gate_open;
static atomic_int gate_got;
static atomic_int gate_entered;
static int gate_receive(tr_ctx *ctx, void *st, tr_msg *m)
{
    (void)ctx; (void)st; (void)m;
    atomic_store(&gate_entered, 1);
    while (!atomic_load(&gate_open))
        th_sleep_ms(1);
    atomic_fetch_add(&gate_got, 1);
    return 0;
}
static const tr_behaviour gate_b = { "gate", NULL, gate_receive, NULL };

static void test_bounded(void **state)
{
    (void)state;
    tr_runtime *rt = th_runtime(2);
    atomic_store(&gate_open, 0);
    atomic_store(&gate_got, 0);
    atomic_store(&gate_entered, 0);
    tr_spawn_opts o = TR_SPAWN_OPTS_INIT;
    o.max_mailbox = 10;
    tr_pid pid;
    assert_int_equal(tr_spawn(rt, &gate_b, NULL, &o, &pid), 0);
    /* The first message is taken and blocks in receive; then 10 fit, the next not. */
    assert_int_equal(tr_send(rt, pid, 0, NULL, 0), 0);
    assert_true(TH_WAIT_UNTIL(atomic_load(&gate_entered), 5000));
    int ok = 0, overload = 0;
    for (int i = 0; i < 50; i++) {
        int rc = tr_send(rt, pid, 0, NULL, 0);
        if (rc == 0)
            ok++;
        else if (rc == TR_EOVERLOAD)
            overload++;
    }
    assert_int_equal(ok, 10);
    assert_int_equal(ok + overload, 50);
    atomic_store(&gate_open, 1);
    assert_true(TH_WAIT_UNTIL(atomic_load(&gate_got) == 1 + ok, 5000));
    assert_int_equal(tr_send(rt, pid, 0, NULL, 0), 0);   /* room again */
    assert_true(TH_WAIT_UNTIL(atomic_load(&gate_got) == 2 + ok, 5000));
    th_finish(rt);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mpsc_direct),
        cmocka_unit_test(test_concurrent_senders),
        cmocka_unit_test(test_bounded),
    };
    return cmocka_run_group_tests_name("mailbox", tests, NULL, NULL);
}
