/* test_link.c — links, monitors and trap_exit (runtime/core/signal.c), with
 * Erlang's semantics: error exits propagate along links, NORMAL does not, trapping
 * turns exit signals into TR_MSG_EXIT, KILL cannot be trapped and reaches links as
 * KILLED, monitors deliver one DOWN, dead pids answer NOPROC. */
#include <stdlib.h>

#include "harness.h"

enum {
    TAG_LINK = 1,     /* payload: tr_pid */
    TAG_UNLINK,       /* payload: tr_pid */
    TAG_MONITOR,      /* payload: tr_pid; the ref goes to node.refs[] */
    TAG_DEMONITOR,    /* payload: uint64_t ref */
    TAG_TRAP,         /* payload: uint64_t on */
    TAG_EXIT,         /* payload: uint64_t reason */
    TAG_KILL,         /* payload: tr_pid; tr_kill(pid, SHUTDOWN) from inside the node */
    TAG_PROBE
};

#define MAX_REFS 4

/* A test actor driven by commands. Everything the test thread reads is atomic. */
typedef struct node {
    int                  trap_in_init;     /* set before spawn */
    atomic_int           handled;          /* user messages handled */
    atomic_int           terminated, term_reason;
    atomic_int           link_rc, unlink_rc, monitor_rc, demonitor_rc;
    atomic_int           n_refs;
    atomic_uint_fast64_t refs[MAX_REFS];   /* monitor refs, in order */
    atomic_int           exits, exit_status;
    atomic_uint_fast64_t exit_from;
    atomic_int           downs, down_status;
    atomic_uint_fast64_t down_ref, down_from;
    atomic_int           unexpected;       /* REPLY/TIMEOUT/CALL: never sent here */
} node;

static void node_setup(node *n)
{
    memset(n, 0, sizeof(*n));
    atomic_store(&n->term_reason, -1);
    atomic_store(&n->exit_status, -1);
    atomic_store(&n->down_status, -1);
    atomic_store(&n->link_rc, 1);
    atomic_store(&n->unlink_rc, 1);
    atomic_store(&n->monitor_rc, 1);
    atomic_store(&n->demonitor_rc, 1);
}

static int node_init(tr_ctx *ctx, void *arg, void **state)
{
    node *n = arg;
    if (n->trap_in_init)
        tr_trap_exit(ctx, 1);
    *state = n;
    return 0;
}

static uint64_t payload_u64(const tr_msg *msg)
{
    uint64_t v = 0;
    if (msg->size == sizeof v)
        memcpy(&v, msg->data, sizeof v);
    return v;
}

static int node_receive(tr_ctx *ctx, void *state, tr_msg *msg)
{
    node *n = state;
    uint64_t arg = payload_u64(msg);
    switch (msg->kind) {
    case TR_MSG_USER:
        switch (msg->tag) {
        case TAG_LINK:
            atomic_store(&n->link_rc, tr_link(ctx, arg));
            break;
        case TAG_UNLINK:
            atomic_store(&n->unlink_rc, tr_unlink(ctx, arg));
            break;
        case TAG_MONITOR: {
            uint64_t ref = 0;
            int rc = tr_monitor(ctx, arg, &ref);
            int i = atomic_load(&n->n_refs);
            if (rc == 0 && i < MAX_REFS) {
                atomic_store(&n->refs[i], ref);
                atomic_store(&n->n_refs, i + 1);
            }
            atomic_store(&n->monitor_rc, rc);
            break;
        }
        case TAG_DEMONITOR:
            atomic_store(&n->demonitor_rc, tr_demonitor(ctx, arg));
            break;
        case TAG_TRAP:
            tr_trap_exit(ctx, (int)arg);
            break;
        case TAG_EXIT:
            tr_exit(ctx, (int)arg);
            break;
        case TAG_KILL:
            tr_kill(tr_ctx_runtime(ctx), arg, TR_EXIT_SHUTDOWN);
            break;
        }
        atomic_fetch_add(&n->handled, 1);
        break;
    case TR_MSG_EXIT:
        if (msg->from == TR_PID_NONE && msg->status == TR_EXIT_SHUTDOWN) {
            /* the runtime stops: obey */
            tr_exit(ctx, msg->status);
            break;
        }
        atomic_store(&n->exit_from, msg->from);
        atomic_store(&n->exit_status, msg->status);
        atomic_fetch_add(&n->exits, 1);
        break;
    case TR_MSG_DOWN:
        atomic_store(&n->down_ref, msg->ref);
        atomic_store(&n->down_from, msg->from);
        atomic_store(&n->down_status, msg->status);
        atomic_fetch_add(&n->downs, 1);
        break;
    default:
        atomic_fetch_add(&n->unexpected, 1);
        break;
    }
    return 0;
}

static void node_terminate(tr_ctx *ctx, void *state, int reason)
{
    (void)ctx;
    node *n = state;
    atomic_store(&n->term_reason, reason);
    atomic_fetch_add(&n->terminated, 1);
}

static const tr_behaviour node_behaviour = { "node", node_init, node_receive, node_terminate };

static tr_pid spawn_node(tr_runtime *rt, node *n, tr_pid link, int trap)
{
    tr_spawn_opts o = TR_SPAWN_OPTS_INIT;
    o.link = link;
    o.trap_exit = trap;
    tr_pid pid = 0;
    assert_int_equal(tr_spawn(rt, &node_behaviour, n, &o, &pid), 0);
    return pid;
}

/* Sends a command and waits until the node has handled it. */
static void node_cmd(tr_runtime *rt, tr_pid pid, node *n, uint32_t tag, uint64_t arg)
{
    int before = atomic_load(&n->handled);
    assert_int_equal(tr_send(rt, pid, tag, &arg, sizeof arg), 0);
    assert_true(TH_WAIT_UNTIL(atomic_load(&n->handled) > before, 5000));
}

/* Makes a node exit with reason (it handles the message, then exits). */
static void node_exit(tr_runtime *rt, tr_pid pid, int reason)
{
    uint64_t r = (uint64_t)reason;
    assert_int_equal(tr_send(rt, pid, TAG_EXIT, &r, sizeof r), 0);
}

static uint64_t exited_count(tr_runtime *rt)
{
    tr_stats st;
    tr_runtime_stats(rt, &st);
    return st.exited;
}

/* Waits until `count` more actors than `base` have fully exited: their links and
 * monitors have been signalled by then (the exit is counted last). */
static void wait_exited(tr_runtime *rt, uint64_t base, uint64_t count)
{
    assert_true(TH_WAIT_UNTIL(exited_count(rt) >= base + count, 5000));
}

/* ---- tests ------------------------------------------------------------------ */

static void test_link_error_exit_propagates(void **unused)
{
    (void)unused;
    tr_runtime *rt = th_runtime(2);
    static node a, b;
    node_setup(&a);
    node_setup(&b);
    tr_pid pa = spawn_node(rt, &a, 0, 0);
    tr_pid pb = spawn_node(rt, &b, 0, 0);

    node_cmd(rt, pa, &a, TAG_LINK, pb);
    assert_int_equal(atomic_load(&a.link_rc), 0);
    node_exit(rt, pb, TR_EXIT_USER + 5);

    assert_true(TH_WAIT_UNTIL(atomic_load(&a.terminated) == 1, 5000));
    assert_int_equal(atomic_load(&a.term_reason), TR_EXIT_USER + 5);
    assert_int_equal(atomic_load(&b.term_reason), TR_EXIT_USER + 5);
    assert_int_equal(tr_alive(rt, pa), 0);
    assert_int_equal(tr_alive(rt, pb), 0);
    assert_int_equal(atomic_load(&a.exits), 0);   /* not trapping: no message */
    th_finish(rt);
}

/* The link made by tr_spawn's opts.link works both ways: here the actor linked to
 * dies and the spawned one follows; a dead opts.link fails the spawn. */
static void test_link_spawn_opt(void **unused)
{
    (void)unused;
    tr_runtime *rt = th_runtime(2);
    static node a, b, c;
    node_setup(&a);
    node_setup(&b);
    node_setup(&c);
    tr_pid pa = spawn_node(rt, &a, 0, 0);
    tr_pid pb = spawn_node(rt, &b, pa, 0);

    node_exit(rt, pa, TR_EXIT_ERROR);
    assert_true(TH_WAIT_UNTIL(atomic_load(&b.terminated) == 1, 5000));
    assert_int_equal(atomic_load(&b.term_reason), TR_EXIT_ERROR);
    assert_int_equal(atomic_load(&a.term_reason), TR_EXIT_ERROR);
    assert_int_equal(tr_alive(rt, pb), 0);

    tr_spawn_opts o = TR_SPAWN_OPTS_INIT;
    o.link = pa;
    tr_pid pc = 0;
    assert_int_equal(tr_spawn(rt, &node_behaviour, &c, &o, &pc), TR_ENOPROC);
    assert_int_equal(atomic_load(&c.terminated), 0);  /* terminate never runs */
    th_finish(rt);
}

static void test_link_normal_exit_not_propagated(void **unused)
{
    (void)unused;
    tr_runtime *rt = th_runtime(2);
    static node a, b;
    node_setup(&a);
    node_setup(&b);
    tr_pid pa = spawn_node(rt, &a, 0, 0);
    tr_pid pb = spawn_node(rt, &b, 0, 0);
    node_cmd(rt, pa, &a, TAG_LINK, pb);
    assert_int_equal(atomic_load(&a.link_rc), 0);

    uint64_t base = exited_count(rt);
    node_exit(rt, pb, TR_EXIT_NORMAL);
    wait_exited(rt, base, 1);
    assert_int_equal(atomic_load(&b.term_reason), TR_EXIT_NORMAL);
    node_cmd(rt, pa, &a, TAG_PROBE, 0);   /* after the exit signal, in A's mailbox */
    assert_int_equal(tr_alive(rt, pa), 1);
    assert_int_equal(atomic_load(&a.terminated), 0);
    assert_int_equal(atomic_load(&a.exits), 0);
    th_finish(rt);
}

static void test_link_trap_exit(void **unused)
{
    (void)unused;
    tr_runtime *rt = th_runtime(2);
    static node a, b, c;
    node_setup(&a);
    node_setup(&b);
    node_setup(&c);
    tr_pid pa = spawn_node(rt, &a, 0, 1);       /* traps from spawn (opts) */
    tr_pid pb = spawn_node(rt, &b, 0, 0);
    tr_pid pc = spawn_node(rt, &c, 0, 0);
    node_cmd(rt, pa, &a, TAG_LINK, pb);
    node_cmd(rt, pa, &a, TAG_LINK, pc);

    node_exit(rt, pb, TR_EXIT_USER + 7);
    assert_true(TH_WAIT_UNTIL(atomic_load(&a.exits) == 1, 5000));
    assert_int_equal(atomic_load(&a.exit_from), pb);
    assert_int_equal(atomic_load(&a.exit_status), TR_EXIT_USER + 7);

    /* A trapping actor also hears of a NORMAL exit. */
    node_exit(rt, pc, TR_EXIT_NORMAL);
    assert_true(TH_WAIT_UNTIL(atomic_load(&a.exits) == 2, 5000));
    assert_int_equal(atomic_load(&a.exit_from), pc);
    assert_int_equal(atomic_load(&a.exit_status), TR_EXIT_NORMAL);

    node_cmd(rt, pa, &a, TAG_PROBE, 0);
    assert_int_equal(tr_alive(rt, pa), 1);
    assert_int_equal(atomic_load(&a.terminated), 0);
    assert_int_equal(atomic_load(&a.exits), 2);
    th_finish(rt);
}

static void test_link_kill_cannot_be_trapped(void **unused)
{
    (void)unused;
    tr_runtime *rt = th_runtime(2);
    static node t, watcher, plain;
    node_setup(&t);
    node_setup(&watcher);
    node_setup(&plain);
    t.trap_in_init = 1;                        /* traps from init (tr_trap_exit) */
    tr_pid pt = spawn_node(rt, &t, 0, 0);
    tr_pid pw = spawn_node(rt, &watcher, pt, 1);
    tr_pid pp = spawn_node(rt, &plain, pt, 0);

    /* A trappable exit signal only becomes a message for t. */
    assert_int_equal(tr_kill(rt, pt, TR_EXIT_USER + 1), 0);
    assert_true(TH_WAIT_UNTIL(atomic_load(&t.exits) == 1, 5000));
    assert_int_equal(atomic_load(&t.exit_status), TR_EXIT_USER + 1);
    assert_int_equal(tr_alive(rt, pt), 1);

    assert_int_equal(tr_kill(rt, pt, TR_EXIT_KILL), 0);
    assert_true(TH_WAIT_UNTIL(atomic_load(&t.terminated) == 1, 5000));
    assert_int_equal(atomic_load(&t.term_reason), TR_EXIT_KILLED);
    assert_int_equal(atomic_load(&t.exits), 1);       /* KILL never reached receive */
    assert_int_equal(tr_alive(rt, pt), 0);

    assert_true(TH_WAIT_UNTIL(atomic_load(&watcher.exits) == 1, 5000));
    assert_int_equal(atomic_load(&watcher.exit_from), pt);
    assert_int_equal(atomic_load(&watcher.exit_status), TR_EXIT_KILLED);
    assert_int_equal(tr_alive(rt, pw), 1);

    assert_true(TH_WAIT_UNTIL(atomic_load(&plain.terminated) == 1, 5000));
    assert_int_equal(atomic_load(&plain.term_reason), TR_EXIT_KILLED);
    assert_int_equal(tr_alive(rt, pp), 0);
    th_finish(rt);
}

/* tr_kill from a linked actor does not cut the link (Erlang's exit/2): the killer
 * still hears of the exit it caused. */
static void test_link_kill_from_linked_actor(void **unused)
{
    (void)unused;
    tr_runtime *rt = th_runtime(2);
    static node a, b;
    node_setup(&a);
    node_setup(&b);
    tr_pid pa = spawn_node(rt, &a, 0, 1);
    tr_pid pb = spawn_node(rt, &b, pa, 0);
    node_cmd(rt, pa, &a, TAG_KILL, pb);
    assert_true(TH_WAIT_UNTIL(atomic_load(&b.terminated) == 1, 5000));
    assert_int_equal(atomic_load(&b.term_reason), TR_EXIT_SHUTDOWN);
    assert_true(TH_WAIT_UNTIL(atomic_load(&a.exits) == 1, 5000));
    assert_int_equal(atomic_load(&a.exit_from), pb);
    assert_int_equal(atomic_load(&a.exit_status), TR_EXIT_SHUTDOWN);
    th_finish(rt);
}

static void test_link_unlink(void **unused)
{
    (void)unused;
    tr_runtime *rt = th_runtime(2);
    static node a, b;
    node_setup(&a);
    node_setup(&b);
    tr_pid pa = spawn_node(rt, &a, 0, 0);
    tr_pid pb = spawn_node(rt, &b, 0, 0);
    node_cmd(rt, pa, &a, TAG_LINK, pb);
    node_cmd(rt, pa, &a, TAG_UNLINK, pb);
    assert_int_equal(atomic_load(&a.link_rc), 0);
    assert_int_equal(atomic_load(&a.unlink_rc), 0);

    uint64_t base = exited_count(rt);
    node_exit(rt, pb, TR_EXIT_USER);
    wait_exited(rt, base, 1);
    node_cmd(rt, pa, &a, TAG_PROBE, 0);
    assert_int_equal(tr_alive(rt, pa), 1);
    assert_int_equal(atomic_load(&a.terminated), 0);
    th_finish(rt);
}

static void test_link_monitor_down(void **unused)
{
    (void)unused;
    tr_runtime *rt = th_runtime(2);
    static node m, b;
    node_setup(&m);
    node_setup(&b);
    tr_pid pm = spawn_node(rt, &m, 0, 0);
    tr_pid pb = spawn_node(rt, &b, 0, 0);
    node_cmd(rt, pm, &m, TAG_MONITOR, pb);
    assert_int_equal(atomic_load(&m.monitor_rc), 0);
    assert_int_equal(atomic_load(&m.n_refs), 1);
    uint64_t ref = atomic_load(&m.refs[0]);
    assert_int_not_equal(ref, 0);

    uint64_t base = exited_count(rt);
    node_exit(rt, pb, TR_EXIT_USER + 3);
    assert_true(TH_WAIT_UNTIL(atomic_load(&m.downs) == 1, 5000));
    assert_int_equal(atomic_load(&m.down_ref), ref);
    assert_int_equal(atomic_load(&m.down_from), pb);
    assert_int_equal(atomic_load(&m.down_status), TR_EXIT_USER + 3);
    /* A monitor is one-way: the watcher lives on, and gets one DOWN. */
    wait_exited(rt, base, 1);
    node_cmd(rt, pm, &m, TAG_PROBE, 0);
    assert_int_equal(atomic_load(&m.downs), 1);
    assert_int_equal(atomic_load(&m.exits), 0);
    assert_int_equal(tr_alive(rt, pm), 1);
    th_finish(rt);
}

static void test_link_monitor_dead_pid(void **unused)
{
    (void)unused;
    tr_runtime *rt = th_runtime(2);
    static node m, b;
    node_setup(&m);
    node_setup(&b);
    tr_pid pm = spawn_node(rt, &m, 0, 0);
    tr_pid pb = spawn_node(rt, &b, 0, 0);
    node_exit(rt, pb, TR_EXIT_NORMAL);
    assert_true(TH_WAIT_UNTIL(!tr_alive(rt, pb), 5000));

    node_cmd(rt, pm, &m, TAG_MONITOR, pb);
    assert_int_equal(atomic_load(&m.monitor_rc), 0);
    uint64_t ref = atomic_load(&m.refs[0]);
    assert_true(TH_WAIT_UNTIL(atomic_load(&m.downs) == 1, 5000));
    assert_int_equal(atomic_load(&m.down_ref), ref);
    assert_int_equal(atomic_load(&m.down_from), pb);
    assert_int_equal(atomic_load(&m.down_status), TR_EXIT_NOPROC);
    node_cmd(rt, pm, &m, TAG_PROBE, 0);
    assert_int_equal(atomic_load(&m.downs), 1);
    th_finish(rt);
}

static void test_link_demonitor(void **unused)
{
    (void)unused;
    tr_runtime *rt = th_runtime(2);
    static node m, b;
    node_setup(&m);
    node_setup(&b);
    tr_pid pm = spawn_node(rt, &m, 0, 0);
    tr_pid pb = spawn_node(rt, &b, 0, 0);
    node_cmd(rt, pm, &m, TAG_MONITOR, pb);
    node_cmd(rt, pm, &m, TAG_MONITOR, pb);
    assert_int_equal(atomic_load(&m.n_refs), 2);
    uint64_t dropped = atomic_load(&m.refs[0]), kept = atomic_load(&m.refs[1]);
    assert_int_not_equal(dropped, kept);
    node_cmd(rt, pm, &m, TAG_DEMONITOR, dropped);
    assert_int_equal(atomic_load(&m.demonitor_rc), 0);

    uint64_t base = exited_count(rt);
    node_exit(rt, pb, TR_EXIT_USER);
    wait_exited(rt, base, 1);
    node_cmd(rt, pm, &m, TAG_PROBE, 0);   /* every DOWN b sent is handled by now */
    assert_int_equal(atomic_load(&m.downs), 1);
    assert_int_equal(atomic_load(&m.down_ref), kept);
    assert_int_equal(atomic_load(&m.down_status), TR_EXIT_USER);
    th_finish(rt);
}

static void test_link_dead_pid(void **unused)
{
    (void)unused;
    tr_runtime *rt = th_runtime(2);
    static node trapper, plain, b;
    node_setup(&trapper);
    node_setup(&plain);
    node_setup(&b);
    tr_pid pt = spawn_node(rt, &trapper, 0, 0);
    tr_pid pp = spawn_node(rt, &plain, 0, 0);
    tr_pid pb = spawn_node(rt, &b, 0, 0);
    node_exit(rt, pb, TR_EXIT_NORMAL);
    assert_true(TH_WAIT_UNTIL(!tr_alive(rt, pb), 5000));

    node_cmd(rt, pt, &trapper, TAG_TRAP, 1);
    node_cmd(rt, pt, &trapper, TAG_LINK, pb);
    assert_int_equal(atomic_load(&trapper.link_rc), 0);
    assert_true(TH_WAIT_UNTIL(atomic_load(&trapper.exits) == 1, 5000));
    assert_int_equal(atomic_load(&trapper.exit_from), pb);
    assert_int_equal(atomic_load(&trapper.exit_status), TR_EXIT_NOPROC);
    node_cmd(rt, pt, &trapper, TAG_PROBE, 0);
    assert_int_equal(tr_alive(rt, pt), 1);

    /* Not trapping: the NOPROC exit signal is not NORMAL, so it kills. */
    node_cmd(rt, pp, &plain, TAG_LINK, pb);
    assert_true(TH_WAIT_UNTIL(atomic_load(&plain.terminated) == 1, 5000));
    assert_int_equal(atomic_load(&plain.term_reason), TR_EXIT_NOPROC);
    th_finish(rt);
}

static void test_link_chain(void **unused)
{
    (void)unused;
    enum { N = 100 };
    tr_runtime *rt = th_runtime(2);
    static node n[N];
    tr_pid p[N];
    for (int i = 0; i < N; i++) {
        node_setup(&n[i]);
        p[i] = spawn_node(rt, &n[i], i ? p[i - 1] : 0, 0);
    }
    assert_int_equal(tr_kill(rt, p[0], TR_EXIT_KILL), 0);
    for (int i = 0; i < N; i++) {
        assert_true(TH_WAIT_UNTIL(!tr_alive(rt, p[i]), 5000));
        assert_true(TH_WAIT_UNTIL(atomic_load(&n[i].terminated) == 1, 5000));
        assert_int_equal(atomic_load(&n[i].term_reason), TR_EXIT_KILLED);
    }
    th_finish(rt);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_link_error_exit_propagates),
        cmocka_unit_test(test_link_spawn_opt),
        cmocka_unit_test(test_link_normal_exit_not_propagated),
        cmocka_unit_test(test_link_trap_exit),
        cmocka_unit_test(test_link_kill_cannot_be_trapped),
        cmocka_unit_test(test_link_kill_from_linked_actor),
        cmocka_unit_test(test_link_unlink),
        cmocka_unit_test(test_link_monitor_down),
        cmocka_unit_test(test_link_monitor_dead_pid),
        cmocka_unit_test(test_link_demonitor),
        cmocka_unit_test(test_link_dead_pid),
        cmocka_unit_test(test_link_chain),
    };
    if (getenv("TEST_FILTER"))   /* e.g. TEST_FILTER='*chain*' runs one test */
        cmocka_set_test_filter(getenv("TEST_FILTER"));
    return cmocka_run_group_tests_name("link", tests, NULL, NULL);
}
