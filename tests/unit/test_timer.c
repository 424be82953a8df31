/* test_timer.c — timers (runtime/core/timer.c): one-shot and periodic delivery, not
 * before the deadline, sender identity, cancel (local and from a foreign thread),
 * many timers on both workers, deadline order, timers left at stop, and the call
 * timeout timer that a reply must cancel. */
#include <stdlib.h>

#include "harness.h"

enum {
    TAG_CMD = 1,      /* to a ticker: a command (struct cmd) */
    TAG_PROBE,        /* counted apart: proves earlier messages were handled */
    TAG_TICK,         /* what the timers deliver in most tests */
    TAG_MASS,         /* the 10,000-timer test; payload: struct mass */
    TAG_ORDER,        /* the order test; payload: uint32 delay */
    TAG_REQ,          /* a call to the echo server */
    TAG_ANSWER
};

enum { OP_AFTER, OP_EVERY, OP_CANCEL, OP_MASS, OP_ORDER, OP_CALLS };

/* A command for a ticker, run inside the actor (so from its worker). */
typedef struct cmd {
    int      op;
    tr_pid   to;
    uint64_t ms;       /* AFTER/EVERY: delay; MASS: how many timers; CALLS: how many */
    uint64_t timer;    /* CANCEL: which; CALLS: the calls' timeout in ms */
    uint64_t value;    /* AFTER/EVERY: payload; MASS: first index */
} cmd;

typedef struct mass {
    uint32_t index;
    uint32_t delay;
    uint64_t set_ms;   /* th_now_ms() before tr_send_after */
} mass;

#define MASS_N 10000
static atomic_int mass_seen[MASS_N];
static atomic_int mass_total, mass_early, mass_bad;

#define MAX_ARRIVALS 8

/* A test actor that sets timers on command and records what timers deliver to it.
 * Everything the test thread reads is atomic. */
typedef struct ticker {
    atomic_int           handled;            /* commands done */
    atomic_int           rc;                 /* the last command's result */
    atomic_int           errors;             /* MASS/ORDER/CALLS: failed sets or calls */
    atomic_uint_fast64_t timer;              /* the last timer set */
    atomic_uint_fast64_t t_set;              /* th_now_ms() just before the last set */
    atomic_int           worker;             /* tr_ctx_worker at the last command */
    atomic_int           ticks, probes;
    atomic_uint_fast64_t arrival[MAX_ARRIVALS];
    atomic_uint          tag;
    atomic_uint_fast64_t from, value;
    atomic_int           kind, size;
    atomic_int           n_order;
    atomic_uint          order[MAX_ARRIVALS];
    atomic_int           replies, timeouts;  /* OP_CALLS */
} ticker;

static void ticker_setup(ticker *t)
{
    memset(t, 0, sizeof(*t));
    atomic_store(&t->rc, 1);
    atomic_store(&t->worker, -2);
}

static int ticker_init(tr_ctx *ctx, void *arg, void **state)
{
    (void)ctx;
    *state = arg;
    return 0;
}

static uint32_t lcg(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

static void run_cmd(tr_ctx *ctx, ticker *t, const cmd *c)
{
    tr_runtime *rt = tr_ctx_runtime(ctx);
    uint64_t id = 0;
    int rc = 0;
    atomic_store(&t->worker, tr_ctx_worker(ctx));
    switch (c->op) {
    case OP_AFTER:
        atomic_store(&t->t_set, th_now_ms());
        rc = tr_send_after(rt, c->to, TAG_TICK, &c->value, sizeof c->value, c->ms, &id);
        atomic_store(&t->timer, id);
        break;
    case OP_EVERY:
        atomic_store(&t->t_set, th_now_ms());
        rc = tr_send_every(rt, c->to, TAG_TICK, &c->value, sizeof c->value, c->ms, &id);
        atomic_store(&t->timer, id);
        break;
    case OP_CANCEL:
        rc = tr_timer_cancel(rt, c->timer);
        break;
    case OP_MASS: {
        uint32_t seed = (uint32_t)c->value * 2654435761u + 17;
        for (uint64_t i = 0; i < c->ms; i++) {
            mass m = { (uint32_t)(c->value + i), lcg(&seed) % 51, th_now_ms() };
            if (tr_send_after(rt, tr_self(ctx), TAG_MASS, &m, sizeof m, m.delay, NULL) < 0)
                atomic_fetch_add(&t->errors, 1);
        }
        break;
    }
    case OP_ORDER: {
        static const uint32_t delays[3] = { 30, 10, 20 };
        for (int i = 0; i < 3; i++)
            if (tr_send_after(rt, tr_self(ctx), TAG_ORDER, &delays[i], sizeof delays[i],
                              delays[i], NULL) < 0)
                atomic_fetch_add(&t->errors, 1);
        break;
    }
    case OP_CALLS:
        for (uint64_t i = 0; i < c->ms; i++) {
            int32_t v = (int32_t)i;
            if (tr_call(ctx, c->to, TAG_REQ, &v, sizeof v, (int)c->timer, NULL) < 0)
                atomic_fetch_add(&t->errors, 1);
        }
        break;
    }
    atomic_store(&t->rc, rc);
    atomic_fetch_add(&t->handled, 1);
}

static int ticker_receive(tr_ctx *ctx, void *state, tr_msg *msg)
{
    ticker *t = state;
    if (msg->kind == TR_MSG_REPLY) {
        atomic_fetch_add(msg->status == 0 ? &t->replies : &t->errors, 1);
        return 0;
    }
    if (msg->kind == TR_MSG_TIMEOUT) {
        atomic_fetch_add(&t->timeouts, 1);
        return 0;
    }
    switch (msg->tag) {
    case TAG_CMD:
        if (msg->size == sizeof(cmd))
            run_cmd(ctx, t, (const cmd *)(const void *)msg->data);
        break;
    case TAG_PROBE:
        atomic_fetch_add(&t->probes, 1);
        break;
    case TAG_MASS: {
        mass m;
        memcpy(&m, msg->data, sizeof m);
        if (msg->size != sizeof m || m.index >= MASS_N) {
            atomic_fetch_add(&mass_bad, 1);
            break;
        }
        if (th_now_ms() < m.set_ms + m.delay)
            atomic_fetch_add(&mass_early, 1);
        if (msg->from != tr_self(ctx))
            atomic_fetch_add(&mass_bad, 1);
        atomic_fetch_add(&mass_seen[m.index], 1);
        atomic_fetch_add(&mass_total, 1);
        break;
    }
    case TAG_ORDER: {
        uint32_t d = 0;
        memcpy(&d, msg->data, sizeof d);
        int i = atomic_fetch_add(&t->n_order, 1);
        if (i < MAX_ARRIVALS)
            atomic_store(&t->order[i], d);
        break;
    }
    default: {           /* TAG_TICK, and anything else a timer delivers */
        uint64_t now = th_now_ms();
        int i = atomic_load(&t->ticks);
        if (i < MAX_ARRIVALS)
            atomic_store(&t->arrival[i], now);
        atomic_store(&t->tag, msg->tag);
        atomic_store(&t->from, msg->from);
        atomic_store(&t->kind, msg->kind);
        atomic_store(&t->size, (int)msg->size);
        uint64_t v = 0;
        if (msg->size == sizeof v)
            memcpy(&v, msg->data, sizeof v);
        atomic_store(&t->value, v);
        atomic_fetch_add(&t->ticks, 1);
        break;
    }
    }
    return 0;
}

static const tr_behaviour ticker_behaviour = { "ticker", ticker_init, ticker_receive, NULL };

static tr_pid spawn_ticker(tr_runtime *rt, ticker *t, int worker)
{
    tr_spawn_opts o = TR_SPAWN_OPTS_INIT;
    o.worker = worker;
    tr_pid pid = 0;
    assert_int_equal(tr_spawn(rt, &ticker_behaviour, t, &o, &pid), 0);
    return pid;
}

/* Runs a command inside the ticker and waits until it is done; returns its result. */
static int ticker_cmd(tr_runtime *rt, tr_pid pid, ticker *t, cmd c)
{
    int before = atomic_load(&t->handled);
    assert_int_equal(tr_send(rt, pid, TAG_CMD, &c, sizeof c), 0);
    assert_true(TH_WAIT_UNTIL(atomic_load(&t->handled) > before, 5000));
    return atomic_load(&t->rc);
}

static void probe(tr_runtime *rt, tr_pid pid, ticker *t)
{
    int before = atomic_load(&t->probes);
    assert_int_equal(tr_send(rt, pid, TAG_PROBE, NULL, 0), 0);
    assert_true(TH_WAIT_UNTIL(atomic_load(&t->probes) > before, 5000));
}

/* 1 if no tick arrived at t during ms (three periods of the tests' 10 ms timers). */
static int ticks_stable(tr_runtime *rt, tr_pid pid, ticker *t, unsigned ms)
{
    probe(rt, pid, t);
    int n = atomic_load(&t->ticks);
    th_sleep_ms(ms);
    probe(rt, pid, t);
    return atomic_load(&t->ticks) == n;
}

/* ---- the echo server for the call-timeout test --------------------------------- */

static int echo_receive(tr_ctx *ctx, void *state, tr_msg *msg)
{
    (void)state;
    if (msg->kind == TR_MSG_CALL)
        return tr_reply(tr_ctx_runtime(ctx), msg, TAG_ANSWER, msg->data, msg->size);
    return 0;
}

static const tr_behaviour echo_behaviour = { "echo", NULL, echo_receive, NULL };

/* ---- tests ------------------------------------------------------------------ */

static void test_timer_send_after_from_actor(void **unused)
{
    (void)unused;
    tr_runtime *rt = th_runtime(2);
    static ticker setter, sink;
    ticker_setup(&setter);
    ticker_setup(&sink);
    tr_pid ps = spawn_ticker(rt, &setter, -1);
    tr_pid pk = spawn_ticker(rt, &sink, -1);

    cmd c = { OP_AFTER, pk, 50, 0, 0xC0FFEE };
    assert_int_equal(ticker_cmd(rt, ps, &setter, c), 0);
    assert_int_not_equal(atomic_load(&setter.timer), 0);
    assert_true(TH_WAIT_UNTIL(atomic_load(&sink.ticks) == 1, 5000));
    assert_in_range(atomic_load(&sink.arrival[0]), atomic_load(&setter.t_set) + 50,
                    UINT64_MAX);
    assert_int_equal(atomic_load(&sink.kind), TR_MSG_USER);
    assert_int_equal(atomic_load(&sink.tag), TAG_TICK);
    assert_int_equal(atomic_load(&sink.size), sizeof(uint64_t));
    assert_int_equal(atomic_load(&sink.value), 0xC0FFEE);
    assert_int_equal(atomic_load(&sink.from), ps);

    /* once only */
    th_sleep_ms(150);
    probe(rt, pk, &sink);
    assert_int_equal(atomic_load(&sink.ticks), 1);
    th_finish(rt);
}

static void test_timer_send_after_from_thread(void **unused)
{
    (void)unused;
    tr_runtime *rt = th_runtime(2);
    static ticker sink;
    ticker_setup(&sink);
    tr_pid pk = spawn_ticker(rt, &sink, -1);

    uint64_t v = 42, id = 0;
    uint64_t t0 = th_now_ms();
    assert_int_equal(tr_send_after(rt, pk, TAG_TICK, &v, sizeof v, 40, &id), 0);
    assert_int_not_equal(id, 0);
    assert_true(TH_WAIT_UNTIL(atomic_load(&sink.ticks) == 1, 5000));
    assert_in_range(atomic_load(&sink.arrival[0]), t0 + 40, UINT64_MAX);
    assert_int_equal(atomic_load(&sink.from), TR_PID_NONE);
    assert_int_equal(atomic_load(&sink.value), 42);
    assert_int_equal(atomic_load(&sink.tag), TAG_TICK);

    /* 0 ms: delivered, still exactly once */
    assert_int_equal(tr_send_after(rt, pk, TAG_TICK, &v, sizeof v, 0, NULL), 0);
    assert_true(TH_WAIT_UNTIL(atomic_load(&sink.ticks) == 2, 5000));
    th_sleep_ms(100);
    probe(rt, pk, &sink);
    assert_int_equal(atomic_load(&sink.ticks), 2);
    th_finish(rt);
}

static void test_timer_send_every_and_cancel(void **unused)
{
    (void)unused;
    tr_runtime *rt = th_runtime(2);
    static ticker setter, sink, sink2;
    ticker_setup(&setter);
    ticker_setup(&sink);
    ticker_setup(&sink2);
    tr_pid ps = spawn_ticker(rt, &setter, 0);
    tr_pid pk = spawn_ticker(rt, &sink, -1);
    tr_pid pk2 = spawn_ticker(rt, &sink2, -1);

    assert_int_equal(tr_send_every(rt, pk, TAG_TICK, NULL, 0, 0, NULL), TR_EINVAL);

    /* Set from an actor pinned to worker 0, cancelled from there: synchronous. */
    cmd c = { OP_EVERY, pk, 10, 0, 7 };
    assert_int_equal(ticker_cmd(rt, ps, &setter, c), 0);
    uint64_t id = atomic_load(&setter.timer);
    uint64_t t_set = atomic_load(&setter.t_set);
    assert_true(TH_WAIT_UNTIL(atomic_load(&sink.ticks) >= 3, 5000));
    /* The k-th delivery is not before k periods. */
    for (int k = 0; k < 3; k++)
        assert_in_range(atomic_load(&sink.arrival[k]), t_set + 10 * (uint64_t)(k + 1),
                        UINT64_MAX);
    assert_int_equal(atomic_load(&sink.from), ps);
    assert_int_equal(atomic_load(&sink.value), 7);
    cmd cancel = { OP_CANCEL, 0, 0, id, 0 };
    assert_int_equal(ticker_cmd(rt, ps, &setter, cancel), 0);
    probe(rt, pk, &sink);            /* what was sent before the cancel is counted */
    int n = atomic_load(&sink.ticks);
    th_sleep_ms(100);                 /* ten periods */
    probe(rt, pk, &sink);
    assert_int_equal(atomic_load(&sink.ticks), n);
    /* A periodic timer stays known until cancelled: now it is gone. */
    assert_int_equal(ticker_cmd(rt, ps, &setter, cancel), TR_ENOPROC);

    /* Set and cancelled from the test thread: asynchronous. */
    uint64_t id2 = 0;
    assert_int_equal(tr_send_every(rt, pk2, TAG_TICK, NULL, 0, 10, &id2), 0);
    assert_true(TH_WAIT_UNTIL(atomic_load(&sink2.ticks) >= 3, 5000));
    assert_int_equal(atomic_load(&sink2.from), TR_PID_NONE);
    assert_int_equal(tr_timer_cancel(rt, id2), 0);
    /* The cancel reaches the owning worker eventually: then the count stops. */
    assert_true(TH_WAIT_UNTIL(ticks_stable(rt, pk2, &sink2, 30), 3000));
    int n2 = atomic_load(&sink2.ticks);
    th_sleep_ms(100);
    probe(rt, pk2, &sink2);
    assert_int_equal(atomic_load(&sink2.ticks), n2);
    th_finish(rt);
}

static void test_timer_cancel_one_shot(void **unused)
{
    (void)unused;
    tr_runtime *rt = th_runtime(2);
    static ticker setter, sink;
    ticker_setup(&setter);
    ticker_setup(&sink);
    tr_pid ps = spawn_ticker(rt, &setter, 0);
    tr_pid pk = spawn_ticker(rt, &sink, -1);

    /* from the owning worker: 0, then ENOPROC (gone) */
    cmd set = { OP_AFTER, pk, 100, 0, 1 };
    assert_int_equal(ticker_cmd(rt, ps, &setter, set), 0);
    assert_int_equal(atomic_load(&setter.worker), 0);
    cmd cancel = { OP_CANCEL, 0, 0, atomic_load(&setter.timer), 0 };
    assert_int_equal(ticker_cmd(rt, ps, &setter, cancel), 0);
    assert_int_equal(ticker_cmd(rt, ps, &setter, cancel), TR_ENOPROC);

    /* from the test thread: asynchronous, 0 */
    uint64_t id = 0, v = 2;
    assert_int_equal(tr_send_after(rt, pk, TAG_TICK, &v, sizeof v, 100, &id), 0);
    assert_int_equal(tr_timer_cancel(rt, id), 0);

    th_sleep_ms(250);
    probe(rt, pk, &sink);
    assert_int_equal(atomic_load(&sink.ticks), 0);

    /* a one-shot that fired is finished: ENOPROC from its worker */
    cmd fast = { OP_AFTER, pk, 1, 0, 3 };
    assert_int_equal(ticker_cmd(rt, ps, &setter, fast), 0);
    assert_true(TH_WAIT_UNTIL(atomic_load(&sink.ticks) == 1, 5000));
    assert_int_equal(atomic_load(&sink.value), 3);
    cmd late = { OP_CANCEL, 0, 0, atomic_load(&setter.timer), 0 };
    assert_int_equal(ticker_cmd(rt, ps, &setter, late), TR_ENOPROC);

    /* ids no worker owns */
    assert_int_equal(tr_timer_cancel(rt, 0), TR_ENOPROC);
    assert_int_equal(tr_timer_cancel(rt, 12345), TR_ENOPROC);
    th_finish(rt);
}

static void test_timer_many_on_both_workers(void **unused)
{
    (void)unused;
    tr_runtime *rt = th_runtime(2);
    static ticker t0, t1;
    ticker_setup(&t0);
    ticker_setup(&t1);
    for (int i = 0; i < MASS_N; i++)
        atomic_store(&mass_seen[i], 0);
    atomic_store(&mass_total, 0);
    atomic_store(&mass_early, 0);
    atomic_store(&mass_bad, 0);
    tr_pid p0 = spawn_ticker(rt, &t0, 0);
    tr_pid p1 = spawn_ticker(rt, &t1, 1);

    cmd c0 = { OP_MASS, 0, MASS_N / 2, 0, 0 };
    cmd c1 = { OP_MASS, 0, MASS_N / 2, 0, MASS_N / 2 };
    assert_int_equal(tr_send(rt, p0, TAG_CMD, &c0, sizeof c0), 0);
    assert_int_equal(tr_send(rt, p1, TAG_CMD, &c1, sizeof c1), 0);
    assert_true(TH_WAIT_UNTIL(atomic_load(&t0.handled) == 1 &&
                              atomic_load(&t1.handled) == 1, 10000));
    assert_int_equal(atomic_load(&t0.worker), 0);
    assert_int_equal(atomic_load(&t1.worker), 1);
    assert_int_equal(atomic_load(&t0.errors), 0);
    assert_int_equal(atomic_load(&t1.errors), 0);

    TH_WAIT_UNTIL(atomic_load(&mass_total) >= MASS_N, 10000);
    assert_int_equal(atomic_load(&mass_total), MASS_N);
    th_sleep_ms(100);
    probe(rt, p0, &t0);
    probe(rt, p1, &t1);
    assert_int_equal(atomic_load(&mass_total), MASS_N);
    assert_int_equal(atomic_load(&mass_early), 0);
    assert_int_equal(atomic_load(&mass_bad), 0);
    for (int i = 0; i < MASS_N; i++)
        if (atomic_load(&mass_seen[i]) != 1)
            fail_msg("timer %d delivered %d times", i, atomic_load(&mass_seen[i]));
    th_finish(rt);
}

static void test_timer_deadline_order(void **unused)
{
    (void)unused;
    tr_runtime *rt = th_runtime(2);
    static ticker t;
    ticker_setup(&t);
    tr_pid p = spawn_ticker(rt, &t, -1);
    cmd c = { OP_ORDER, 0, 0, 0, 0 };
    assert_int_equal(ticker_cmd(rt, p, &t, c), 0);
    assert_int_equal(atomic_load(&t.errors), 0);
    assert_true(TH_WAIT_UNTIL(atomic_load(&t.n_order) == 3, 5000));
    assert_int_equal(atomic_load(&t.order[0]), 10);
    assert_int_equal(atomic_load(&t.order[1]), 20);
    assert_int_equal(atomic_load(&t.order[2]), 30);
    th_finish(rt);
}

/* Timers of a minute, set from actors on both workers and from the test thread, are
 * still pending at stop: the stop does not wait for them and frees them all. */
static void test_timer_pending_at_stop(void **unused)
{
    (void)unused;
    tr_runtime *rt = th_runtime(2);
    static ticker t0, t1;
    ticker_setup(&t0);
    ticker_setup(&t1);
    tr_pid p0 = spawn_ticker(rt, &t0, 0);
    tr_pid p1 = spawn_ticker(rt, &t1, 1);
    for (int i = 0; i < 50; i++) {
        cmd a = { OP_AFTER, p1, 60000, 0, (uint64_t)i };
        cmd e = { OP_EVERY, p0, 60000, 0, (uint64_t)i };
        assert_int_equal(ticker_cmd(rt, p0, &t0, a), 0);
        assert_int_equal(ticker_cmd(rt, p1, &t1, e), 0);
        uint64_t v = (uint64_t)i;
        assert_int_equal(tr_send_after(rt, p0, TAG_TICK, &v, sizeof v, 60000, NULL), 0);
        assert_int_equal(tr_send_every(rt, p1, TAG_TICK, &v, sizeof v, 60000, NULL), 0);
    }
    uint64_t start = th_now_ms();
    th_finish(rt);
    assert_in_range(th_now_ms() - start, 0, 2000);
    assert_int_equal(atomic_load(&t0.ticks), 0);
    assert_int_equal(atomic_load(&t1.ticks), 0);
}

/* The same from the test thread alone, with no actor left to wait for: the stop
 * is immediate, so the timers may still be commands a worker never ran.
 *
 * A regression test for a core bug found with it (runtime/core/worker.c,
 * tr__worker_close): a TR__CMD_TIMER_ADD command still queued when the worker quit
 * was freed with its message (c->msg) but not with its timer entry (c->timer,
 * allocated by tr__timer_add), so th_finish saw tr_alloc_live() == 200 here in most
 * runs. The working tree now frees c->timer too. */
static void test_timer_set_just_before_stop(void **unused)
{
    (void)unused;
    tr_runtime *rt = th_runtime(2);
    for (int i = 0; i < 100; i++) {
        uint64_t v = (uint64_t)i;
        assert_int_equal(tr_send_after(rt, (tr_pid)1, TAG_TICK, &v, sizeof v, 60000, NULL), 0);
        assert_int_equal(tr_send_every(rt, (tr_pid)1, TAG_TICK, &v, sizeof v, 60000, NULL), 0);
    }
    uint64_t start = th_now_ms();
    th_finish(rt);
    assert_in_range(th_now_ms() - start, 0, 2000);
}

/* A reply cancels its call's timeout timer. Observable from outside: a timer left
 * running would fire after the reply and push a TIMEOUT (dropped unseen, the call is
 * settled) that still wakes the caller for a turn. So after calls with a 1 s
 * timeout are all answered, no actor turn may happen past their deadlines. Then
 * calls with a 60 s timeout: the stop neither waits for them nor leaks. (Counting
 * live allocations would not do: the message pool keeps freed blocks.) */
static void test_timer_call_timeout_cancelled(void **unused)
{
    (void)unused;
    enum { CALLS = 500 };
    tr_runtime *rt = th_runtime(2);
    static ticker pinned, floating;
    ticker_setup(&pinned);
    ticker_setup(&floating);
    tr_pid echo = 0;
    assert_int_equal(tr_spawn(rt, &echo_behaviour, NULL, NULL, &echo), 0);
    tr_pid pp = spawn_ticker(rt, &pinned, 0);
    tr_pid pf = spawn_ticker(rt, &floating, -1);

    static const uint64_t timeouts[2] = { 1000, 60000 };
    for (int round = 1; round <= 2; round++) {
        cmd c = { OP_CALLS, echo, CALLS, timeouts[round - 1], 0 };
        uint64_t t_start = th_now_ms();
        assert_int_equal(tr_send(rt, pp, TAG_CMD, &c, sizeof c), 0);
        assert_int_equal(tr_send(rt, pf, TAG_CMD, &c, sizeof c), 0);
        TH_WAIT_UNTIL(atomic_load(&pinned.replies) == round * CALLS &&
                      atomic_load(&floating.replies) == round * CALLS, 10000);
        assert_int_equal(atomic_load(&pinned.replies), round * CALLS);
        assert_int_equal(atomic_load(&floating.replies), round * CALLS);
        assert_int_equal(atomic_load(&pinned.errors), 0);
        assert_int_equal(atomic_load(&floating.errors), 0);
        if (round == 1) {
            probe(rt, pp, &pinned);
            probe(rt, pf, &floating);
            /* A worker publishes its turn count after a batch of turns, not inside
             * the probe's turn that the probe waits on: wait until two reads 20 ms
             * apart agree, which must still be well before the deadlines. */
            tr_stats before, after;
            tr_runtime_stats(rt, &before);
            do {
                th_sleep_ms(20);
                after = before;
                tr_runtime_stats(rt, &before);
            } while (before.turns != after.turns);
            assert_true(th_now_ms() < t_start + timeouts[0] - 200);
            /* past every deadline of this round (set after t_start), with margin */
            uint64_t quiet_until = t_start + timeouts[0] + 300;
            while (th_now_ms() < quiet_until)
                th_sleep_ms(10);
            tr_runtime_stats(rt, &after);
            assert_int_equal(after.turns, before.turns);
        }
    }
    assert_int_equal(atomic_load(&pinned.timeouts), 0);
    assert_int_equal(atomic_load(&floating.timeouts), 0);
    uint64_t start = th_now_ms();
    th_finish(rt);
    assert_in_range(th_now_ms() - start, 0, 2000);
}

/* ---- a timer due just as its worker goes to sleep ------------------------------- */

/* Each message sets the next 1 ms timer to itself, until `left` runs out. */
typedef struct chain {
    atomic_int left, done;
} chain;

static int chain_receive(tr_ctx *ctx, void *state, tr_msg *msg)
{
    (void)msg;
    chain *c = state;
    if (atomic_fetch_sub(&c->left, 1) <= 1) {
        atomic_store(&c->done, 1);
        return 0;
    }
    return tr_send_after(tr_ctx_runtime(ctx), tr_self(ctx), TAG_TICK, NULL, 0, 1, NULL);
}

static const tr_behaviour chain_behaviour = { "chain", ticker_init, chain_receive, NULL };

/* A regression test for a lost wakeup found by the TSan spec run (runtime/core/
 * worker.c): a worker about to sleep calls uv_run(UV_RUN_ONCE), which runs the timers
 * due *before* it computes its poll timeout. A timer that came due in the moment
 * between the worker's last look at its queues and that call delivered its message
 * there, queued the actor on the same worker (no wakeup needed on its own thread),
 * and libuv then blocked in epoll with no timeout left: the actor and every timer it
 * would set waited forever. Chains of 1 ms timers, floating and pinned, on otherwise
 * idle workers, make that moment come up many times. */
static void test_timer_due_as_worker_sleeps(void **unused)
{
    (void)unused;
    enum { LINKS = 1500 };
    tr_runtime *rt = th_runtime(2);
    static chain floating, pinned;
    atomic_store(&floating.left, LINKS);
    atomic_store(&pinned.left, LINKS);
    atomic_store(&floating.done, 0);
    atomic_store(&pinned.done, 0);
    tr_pid pf = 0, pp = 0;
    tr_spawn_opts on1 = TR_SPAWN_OPTS_INIT;
    on1.worker = 1;
    assert_int_equal(tr_spawn(rt, &chain_behaviour, &floating, NULL, &pf), 0);
    assert_int_equal(tr_spawn(rt, &chain_behaviour, &pinned, &on1, &pp), 0);
    assert_int_equal(tr_send(rt, pf, TAG_TICK, NULL, 0), 0);
    assert_int_equal(tr_send(rt, pp, TAG_TICK, NULL, 0), 0);
    TH_WAIT_UNTIL(atomic_load(&floating.done) && atomic_load(&pinned.done), 30000);
    /* left: how many links each chain still had to go when the wait ended */
    assert_int_equal(atomic_load(&floating.left), 0);
    assert_int_equal(atomic_load(&pinned.left), 0);
    th_finish(rt);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timer_send_after_from_actor),
        cmocka_unit_test(test_timer_send_after_from_thread),
        cmocka_unit_test(test_timer_send_every_and_cancel),
        cmocka_unit_test(test_timer_cancel_one_shot),
        cmocka_unit_test(test_timer_many_on_both_workers),
        cmocka_unit_test(test_timer_deadline_order),
        cmocka_unit_test(test_timer_pending_at_stop),
        cmocka_unit_test(test_timer_set_just_before_stop),
        cmocka_unit_test(test_timer_call_timeout_cancelled),
        cmocka_unit_test(test_timer_due_as_worker_sleeps),
    };
    if (getenv("TEST_FILTER"))   /* e.g. TEST_FILTER='*order*' runs one test */
        cmocka_set_test_filter(getenv("TEST_FILTER"));
    return cmocka_run_group_tests_name("timer", tests, NULL, NULL);
}
