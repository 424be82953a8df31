/* test_actor.c — spawn, send, exit, stale pids, pointer payloads, pinning, and
 * allocation failure at every allocation of spawn and send. */
#include "harness.h"

enum { TAG_HELLO = 1, TAG_EXIT = 2, TAG_CALL_N = 3, TAG_WHERE = 4 };

typedef struct {
    atomic_int  got;
    atomic_int  last_tag;
    atomic_long payload;
    atomic_int  terminated;
    atomic_int  reason;
    atomic_int  worker_mask;
    atomic_int  rc;
    atomic_int  done;
    tr_pid      peer;
} probe;

static int probe_init(tr_ctx *ctx, void *arg, void **st) { (void)ctx; *st = arg; return 0; }
static int probe_receive(tr_ctx *ctx, void *st, tr_msg *m)
{
    probe *p = st;
    if (m->tag == TAG_EXIT) {
        tr_exit(ctx, TR_EXIT_USER + 1);
        return 0;
    }
    if (m->tag == TAG_CALL_N) {
        /* Fail the Nth allocation of a tr_call made from inside an actor. */
        long n;
        memcpy(&n, m->data, sizeof n);
        tr_alloc_fail_after(n);
        int rc = tr_call(ctx, p->peer, 0, "x", 1, 1000, NULL);
        tr_alloc_fail_after(-1);
        atomic_store(&p->rc, rc);
        atomic_store(&p->done, 1);
        return 0;
    }
    if (m->tag == TAG_WHERE)
        atomic_fetch_or(&p->worker_mask, 1 << tr_ctx_worker(ctx));
    if (m->size == sizeof(long)) {
        long v;
        memcpy(&v, m->data, sizeof v);
        atomic_store(&p->payload, v);
    }
    if (m->ptr) {
        atomic_store(&p->payload, *(long *)m->ptr);
        tr_free(m->ptr);  /* delivered: the receiver owns it */
    }
    atomic_store(&p->last_tag, (int)m->tag);
    atomic_fetch_add(&p->got, 1);
    return 0;
}
static void probe_terminate(tr_ctx *ctx, void *st, int reason)
{
    (void)ctx;
    probe *p = st;
    atomic_store(&p->reason, reason);
    atomic_fetch_add(&p->terminated, 1);
}
static const tr_behaviour probe_b = { "probe", probe_init, probe_receive, probe_terminate };

static void test_spawn_send_exit(void **state)
{
    (void)state;
    tr_runtime *rt = th_runtime(2);
    probe p;
    memset(&p, 0, sizeof p);
    tr_pid pid;
    assert_int_equal(tr_spawn(rt, &probe_b, &p, NULL, &pid), 0);
    assert_int_not_equal(pid, TR_PID_NONE);
    assert_true(tr_alive(rt, pid));
    long v = 42;
    assert_int_equal(tr_send(rt, pid, TAG_HELLO, &v, sizeof v), 0);
    assert_true(TH_WAIT_UNTIL(atomic_load(&p.got) == 1, 5000));
    assert_int_equal(atomic_load(&p.payload), 42);
    assert_int_equal(atomic_load(&p.last_tag), TAG_HELLO);
    assert_int_equal(tr_send(rt, pid, TAG_EXIT, NULL, 0), 0);
    assert_true(TH_WAIT_UNTIL(th_live(rt) == 0, 5000));
    assert_false(tr_alive(rt, pid));
    assert_int_equal(atomic_load(&p.terminated), 1);
    assert_int_equal(atomic_load(&p.reason), TR_EXIT_USER + 1);
    assert_int_equal(tr_send(rt, pid, TAG_HELLO, NULL, 0), TR_ENOPROC);
    tr_stats st;
    tr_runtime_stats(rt, &st);
    assert_int_equal(st.actors_live, 0);
    assert_int_equal(st.spawned, 1);
    assert_int_equal(st.exited, 1);
    th_finish(rt);
}

static int failing_init(tr_ctx *ctx, void *arg, void **st)
{
    (void)ctx; (void)arg;
    *st = tr_malloc(100);   /* init must clean up after itself on failure */
    tr_free(*st);
    return TR_EINVAL;
}
static const tr_behaviour failing_b = { "failing", failing_init, NULL, probe_terminate };

static void test_init_failure(void **state)
{
    (void)state;
    tr_runtime *rt = th_runtime(2);
    tr_pid pid = 7;
    assert_int_equal(tr_spawn(rt, &failing_b, NULL, NULL, &pid), TR_EFAIL);
    assert_int_equal(pid, 7);    /* untouched */
    tr_stats st;
    tr_runtime_stats(rt, &st);
    assert_int_equal(st.actors_live, 0);
    assert_int_equal(st.spawned, 0);
    tr_spawn_opts o = TR_SPAWN_OPTS_INIT;
    o.worker = 99;
    probe p;
    memset(&p, 0, sizeof p);
    assert_int_equal(tr_spawn(rt, &probe_b, &p, &o, &pid), TR_EINVAL);
    th_finish(rt);
}

/* A pid whose slot was reused never reaches the new actor. */
static void test_stale_pid(void **state)
{
    (void)state;
    tr_runtime *rt = th_runtime(2);
    probe a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    tr_pid pa, pb;
    assert_int_equal(tr_spawn(rt, &probe_b, &a, NULL, &pa), 0);
    assert_int_equal(tr_send(rt, pa, TAG_EXIT, NULL, 0), 0);
    assert_true(TH_WAIT_UNTIL(atomic_load(&a.terminated) == 1, 5000));
    assert_int_equal(tr_spawn(rt, &probe_b, &b, NULL, &pb), 0);
    assert_int_equal((uint32_t)pa, (uint32_t)pb);   /* same slot ... */
    assert_int_not_equal(pa, pb);                    /* ... new generation */
    assert_int_equal(tr_send(rt, pa, TAG_HELLO, NULL, 0), TR_ENOPROC);
    assert_int_equal(tr_kill(rt, pa, TR_EXIT_KILL), TR_ENOPROC);
    assert_int_equal(tr_send(rt, pb, TAG_WHERE, NULL, 0), 0);
    assert_true(TH_WAIT_UNTIL(atomic_load(&b.got) == 1, 5000));
    th_sleep_ms(20);
    assert_int_equal(atomic_load(&b.got), 1);
    assert_int_equal(atomic_load(&b.last_tag), TAG_WHERE);
    assert_true(tr_alive(rt, pb));
    th_finish(rt);
}

static atomic_int ptr_freed;
static void count_free(void *p) { atomic_fetch_add(&ptr_freed, 1); tr_free(p); }

static void test_send_ptr_ownership(void **state)
{
    (void)state;
    tr_runtime *rt = th_runtime(2);
    atomic_store(&ptr_freed, 0);
    probe p;
    memset(&p, 0, sizeof p);
    tr_pid pid;
    assert_int_equal(tr_spawn(rt, &probe_b, &p, NULL, &pid), 0);
    long *v = tr_malloc(sizeof *v);
    *v = 99;
    assert_int_equal(tr_send_ptr(rt, pid, TAG_HELLO, v, count_free), 0);
    assert_true(TH_WAIT_UNTIL(atomic_load(&p.got) == 1, 5000));
    assert_int_equal(atomic_load(&p.payload), 99);
    assert_int_equal(atomic_load(&ptr_freed), 0);   /* delivered: receiver freed it */

    assert_int_equal(tr_send(rt, pid, TAG_EXIT, NULL, 0), 0);
    assert_true(TH_WAIT_UNTIL(!tr_alive(rt, pid), 5000));
    long *w = tr_malloc(sizeof *w);
    assert_int_equal(tr_send_ptr(rt, pid, TAG_HELLO, w, count_free), TR_ENOPROC);
    assert_int_equal(atomic_load(&ptr_freed), 0);   /* failed: still the caller's */
    tr_free(w);
    th_finish(rt);
}

/* Pointer messages still queued when the actor exits are released and counted. */
static void test_dropped_on_exit(void **state)
{
    (void)state;
    tr_runtime *rt = th_runtime(1);
    atomic_store(&ptr_freed, 0);
    probe p;
    memset(&p, 0, sizeof p);
    tr_pid pid;
    assert_int_equal(tr_spawn(rt, &probe_b, &p, NULL, &pid), 0);
    assert_int_equal(tr_send(rt, pid, TAG_EXIT, NULL, 0), 0);
    int sent = 0;
    for (int i = 0; i < 100; i++) {
        long *v = tr_malloc(sizeof *v);
        if (tr_send_ptr(rt, pid, TAG_HELLO, v, count_free) == 0)
            sent++;
        else
            tr_free(v);
    }
    /* Every accepted message is released, also those whose push raced the exit. */
    assert_true(TH_WAIT_UNTIL(th_live(rt) == 0, 5000));
    assert_true(TH_WAIT_UNTIL(atomic_load(&ptr_freed) == sent, 5000));
    tr_stats st;
    tr_runtime_stats(rt, &st);
    assert_int_equal(atomic_load(&p.got), 0);
    assert_int_equal(st.dropped, (uint64_t)sent);
    th_finish(rt);
}

static void test_pinned(void **state)
{
    (void)state;
    tr_runtime *rt = th_runtime(2);
    for (int w = 0; w < 2; w++) {
        probe p;
        memset(&p, 0, sizeof p);
        tr_spawn_opts o = TR_SPAWN_OPTS_INIT;
        o.worker = w;
        tr_pid pid;
        assert_int_equal(tr_spawn(rt, &probe_b, &p, &o, &pid), 0);
        for (int i = 0; i < 2000; i++)
            assert_int_equal(tr_send(rt, pid, TAG_WHERE, NULL, 0), 0);
        assert_true(TH_WAIT_UNTIL(atomic_load(&p.got) == 2000, 10000));
        assert_int_equal(atomic_load(&p.worker_mask), 1 << w);
        assert_int_equal(tr_send(rt, pid, TAG_EXIT, NULL, 0), 0);
        assert_true(TH_WAIT_UNTIL(!tr_alive(rt, pid), 5000));
    }
    th_finish(rt);
}

/* Waits until the runtime's own allocations are back to `base` (workers free
 * messages asynchronously). */
static void settle(long base)
{
    if (!TH_WAIT_UNTIL(tr_alloc_live() == base, 5000))
        fail_msg("allocations: %ld live, %ld expected", tr_alloc_live(), base);
}

/* Every allocation tr_spawn (with a link and an allocating init) and the sends make
 * can fail: each failure returns TR_ENOMEM and leaves nothing behind. */
static int alloc_init(tr_ctx *ctx, void *arg, void **st)
{
    (void)arg;
    *st = tr_malloc(64);
    if (*st == NULL)
        return TR_ENOMEM;
    uint64_t ref;
    int rc = tr_monitor(ctx, tr_self(ctx), &ref);  /* allocates the ext and a signal */
    if (rc < 0) {
        tr_free(*st);
        return rc;
    }
    return 0;
}
static void alloc_terminate(tr_ctx *ctx, void *st, int reason) { (void)ctx; (void)reason; tr_free(st); }
static const tr_behaviour alloc_b = { "alloc", alloc_init, NULL, alloc_terminate };

static void test_enomem_everywhere(void **state)
{
    (void)state;
    tr_runtime *rt = th_runtime(2);
    probe parent;
    memset(&parent, 0, sizeof parent);
    tr_pid ppid;
    assert_int_equal(tr_spawn(rt, &probe_b, &parent, NULL, &ppid), 0);
    /* Let the runtime's own tables reach their steady size first: the free-slot stack
     * and the parent's link table grow once and stay. */
    tr_spawn_opts warm = TR_SPAWN_OPTS_INIT;
    warm.link = ppid;
    tr_pid wpid;
    assert_int_equal(tr_spawn(rt, &alloc_b, NULL, &warm, &wpid), 0);
    assert_int_equal(tr_send(rt, ppid, TAG_HELLO, NULL, 0), 0);
    assert_true(TH_WAIT_UNTIL(atomic_load(&parent.got) == 1, 5000));
    tr_alloc_fail_after(-1);
    assert_int_equal(tr_kill(rt, wpid, TR_EXIT_NORMAL), 0);   /* not trapping: ignored */
    assert_int_equal(tr_kill(rt, wpid, TR_EXIT_KILL), 0);
    assert_true(TH_WAIT_UNTIL(!tr_alive(rt, wpid), 5000));
    assert_true(TH_WAIT_UNTIL(!tr_alive(rt, ppid), 5000));   /* KILLED propagates */
    memset(&parent, 0, sizeof parent);
    assert_int_equal(tr_spawn(rt, &probe_b, &parent, NULL, &ppid), 0);
    assert_int_equal(tr_spawn(rt, &alloc_b, NULL, &warm, &wpid), TR_ENOPROC); /* old parent */
    warm.link = ppid;
    assert_int_equal(tr_spawn(rt, &alloc_b, NULL, &warm, &wpid), 0);
    assert_int_equal(tr_kill(rt, wpid, TR_EXIT_SHUTDOWN), 0);
    assert_true(TH_WAIT_UNTIL(!tr_alive(rt, wpid), 5000));
    assert_true(TH_WAIT_UNTIL(!tr_alive(rt, ppid), 5000));   /* SHUTDOWN propagates too */
    /* The parent from now on traps exits, and has had a link once. */
    memset(&parent, 0, sizeof parent);
    tr_spawn_opts trap = TR_SPAWN_OPTS_INIT;
    trap.trap_exit = 1;
    assert_int_equal(tr_spawn(rt, &probe_b, &parent, &trap, &ppid), 0);
    warm.link = ppid;
    assert_int_equal(tr_spawn(rt, &alloc_b, NULL, &warm, &wpid), 0);
    assert_int_equal(tr_kill(rt, wpid, TR_EXIT_KILL), 0);
    assert_true(TH_WAIT_UNTIL(atomic_load(&parent.got) == 1, 5000));  /* its EXIT */
    assert_true(tr_alive(rt, ppid));
    long base = tr_alloc_live();

    int failures = 0, n;
    for (n = 0; n < 100; n++) {
        tr_spawn_opts o = TR_SPAWN_OPTS_INIT;
        o.link = ppid;
        tr_pid pid = 0;
        tr_alloc_fail_after(n);
        int rc = tr_spawn(rt, &alloc_b, NULL, &o, &pid);
        long left = tr_alloc_fail_after(-1);
        if (rc == 0) {
            assert_true(left >= 0);   /* done before the injected failure was due */
            tr_kill(rt, pid, TR_EXIT_KILL);
            assert_true(TH_WAIT_UNTIL(!tr_alive(rt, pid), 5000));
            break;
        }
        assert_int_equal(rc, TR_ENOMEM);
        assert_int_equal(pid, 0);
        failures++;
        if (!TH_WAIT_UNTIL(tr_alloc_live() == base, 5000))
            fail_msg("spawn failing at allocation %d left %ld blocks", n, tr_alloc_live() - base);
    }
    assert_true(failures >= 3);    /* chunk, ext, link signal, state, monitor ... */
    assert_true(tr_alive(rt, ppid));   /* the would-be parent never heard of them */

    /* tr_send, tr_send_ptr and tr_msg_new. */
    tr_alloc_fail_after(0);
    assert_int_equal(tr_send(rt, ppid, TAG_HELLO, "x", 1), TR_ENOMEM);
    tr_alloc_fail_after(0);
    long *v = tr_malloc(sizeof *v);   /* this one fails ... */
    assert_null(v);
    v = tr_malloc(sizeof *v);
    tr_alloc_fail_after(0);
    assert_int_equal(tr_send_ptr(rt, ppid, TAG_HELLO, v, tr_free), TR_ENOMEM);
    tr_free(v);                        /* ... the caller kept it */
    tr_alloc_fail_after(0);
    assert_null(tr_msg_new(1, "x", 1));
    tr_alloc_fail_after(-1);
    settle(base);

    /* tr_call from inside an actor, failing each of its allocations in turn. */
    probe caller;
    memset(&caller, 0, sizeof caller);
    caller.peer = ppid;
    tr_pid cpid;
    assert_int_equal(tr_spawn(rt, &probe_b, &caller, NULL, &cpid), 0);
    int call_failures = 0;
    for (long k = 0; k < 20; k++) {
        atomic_store(&caller.done, 0);
        assert_int_equal(tr_send(rt, cpid, TAG_CALL_N, &k, sizeof k), 0);
        assert_true(TH_WAIT_UNTIL(atomic_load(&caller.done), 5000));
        int rc = atomic_load(&caller.rc);
        if (rc == 0)
            break;
        assert_int_equal(rc, TR_ENOMEM);
        call_failures++;
    }
    assert_true(call_failures >= 3);  /* ext, request, timeout message, timer entry */
    th_finish(rt);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spawn_send_exit),
        cmocka_unit_test(test_init_failure),
        cmocka_unit_test(test_stale_pid),
        cmocka_unit_test(test_send_ptr_ownership),
        cmocka_unit_test(test_dropped_on_exit),
        cmocka_unit_test(test_pinned),
        cmocka_unit_test(test_enomem_everywhere),
    };
    return cmocka_run_group_tests_name("actor", tests, NULL, NULL);
}
