/* test_pg.c — the Postgres driver's C API (runtime/store/pg.h): configuration, a query
 * from a C actor, a pinned connection used and released from a thread that is no
 * worker (the post queue), misuse, and a runtime freed with a query in flight. Every
 * test proves that what the runtime allocated was freed. The tests that need a server
 * are skipped without TROUPE_PG_URL (tests/run.sh sets it). */
#include <stdlib.h>

#include "harness.h"
#include "pg.h"

static int have_pg(void)
{
    const char *u = getenv("TROUPE_PG_URL");
    return u && *u;
}

/* ---- a C actor that submits what it is told to ---- */

typedef struct outcome {
    _Atomic int done;
    int         ok;
    char        value[64];
    char        code[8];
    tr_pg_conn *conn;
} outcome;

static tr_pg  *the_pg;
static outcome the_out;
static const char *the_sql;
enum { TAG_QUERY = 1, TAG_ACQUIRE = 2 };

static void on_done(void *arg, PGresult *res, tr_pg_error *err)
{
    outcome *o = arg;
    if (res) {
        o->ok = 1;
        snprintf(o->value, sizeof o->value, "%s", PQntuples(res) ? PQgetvalue(res, 0, 0) : "");
        PQclear(res);
    } else {
        snprintf(o->code, sizeof o->code, "%s", err ? err->field[TR_PG_E_CODE] : "oom");
        tr_pg_error_free(err);
    }
    atomic_store(&o->done, 1);
}

static void on_acquired(void *arg, tr_pg_conn *conn, tr_pg_error *err)
{
    outcome *o = arg;
    o->conn = conn;
    o->ok = conn != NULL;
    tr_pg_error_free(err);
    atomic_store(&o->done, 1);
}

static int client_receive(tr_ctx *ctx, void *state, tr_msg *m)
{
    (void)ctx;
    (void)state;
    if (m->tag == TAG_QUERY) {
        tr_pg_query q = { the_sql, strlen(the_sql), NULL, 0, 0 };
        assert_int_equal(tr_pg_submit(the_pg, NULL, &q, on_done, &the_out), 0);
    } else if (m->tag == TAG_ACQUIRE) {
        assert_int_equal(tr_pg_acquire(the_pg, -1, on_acquired, &the_out), 0);
    }
    return 0;
}

static const tr_behaviour client = { "pg client", NULL, client_receive, NULL };

static void run(tr_runtime *rt, tr_pid pid, int tag, const char *sql)
{
    memset(&the_out, 0, sizeof the_out);
    the_sql = sql;
    assert_int_equal(tr_send(rt, pid, (uint32_t)tag, NULL, 0), 0);
    assert_true(TH_WAIT_UNTIL(atomic_load(&the_out.done), 10000));
}

static tr_pid spawn_client(tr_runtime *rt)
{
    tr_spawn_opts o = TR_SPAWN_OPTS_INIT;
    o.worker = 0;
    tr_pid pid;
    assert_int_equal(tr_spawn(rt, &client, NULL, &o, &pid), 0);
    return pid;
}

/* ---- tests ---- */

static void config_from_env(void **unused)
{
    (void)unused;
    tr_pg_config c;
    tr_pg_config_init(&c);
    assert_int_equal(c.max, 8);
    assert_int_equal(c.pipeline_depth, 64);
    setenv("TROUPE_PG_POOL_MAX", "3", 1);
    setenv("TROUPE_PG_ACQUIRE_TIMEOUT_MS", "250", 1);
    setenv("TROUPE_PG_SLOW_MS", "nope", 1);
    tr_pg_config_env(&c);
    assert_int_equal(c.max, 3);
    assert_int_equal(c.acquire_timeout_ms, 250);
    assert_int_equal(c.slow_ms, 1000);
    unsetenv("TROUPE_PG_POOL_MAX");
    unsetenv("TROUPE_PG_ACQUIRE_TIMEOUT_MS");
    unsetenv("TROUPE_PG_SLOW_MS");
}

static void configure_validates(void **unused)
{
    (void)unused;
    tr_runtime *rt = th_runtime(2);
    tr_pg *pg;
    assert_int_equal(tr_pg_get(rt, &pg), 0);
    tr_pg *again;
    assert_int_equal(tr_pg_get(rt, &again), 0);
    assert_ptr_equal(pg, again);
    tr_pg_config c;
    char url[256], err[256];
    tr_pg_config_current(pg, &c, url, sizeof url);
    c.max = 0;
    assert_int_equal(tr_pg_configure(pg, &c, err, sizeof err), TR_EINVAL);
    c.max = 2;
    c.url = "postgresql://[bad";
    assert_int_equal(tr_pg_configure(pg, &c, err, sizeof err), TR_EINVAL);
    c.url = "postgresql://u@127.0.0.1:1/db";
    assert_int_equal(tr_pg_configure(pg, &c, err, sizeof err), 0);
    tr_pg_config_current(pg, &c, url, sizeof url);
    assert_string_equal(c.url, "postgresql://u@127.0.0.1:1/db");
    assert_int_equal(c.max, 2);
    /* Off a worker, a pooled query is refused; transaction control always is. */
    tr_pg_query q = { "SELECT 1", 8, NULL, 0, 0 };
    assert_int_equal(tr_pg_submit(pg, NULL, &q, on_done, &the_out), TR_ESTATE);
    tr_pg_query b = { " begin", 6, NULL, 0, 0 };
    assert_int_equal(tr_pg_submit(pg, NULL, &b, on_done, &the_out), TR_EINVAL);
    th_finish(rt);
}

static void cannot_connect_fails_fast(void **unused)
{
    (void)unused;
    tr_runtime *rt = th_runtime(1);
    assert_int_equal(tr_pg_get(rt, &the_pg), 0);
    tr_pg_config c;
    char url[256], err[256];
    tr_pg_config_current(the_pg, &c, url, sizeof url);
    c.url = "postgresql://u@127.0.0.1:1/db";
    assert_int_equal(tr_pg_configure(the_pg, &c, err, sizeof err), 0);
    tr_pid pid = spawn_client(rt);
    run(rt, pid, TAG_QUERY, "SELECT 1");
    assert_false(the_out.ok);
    assert_string_equal(the_out.code, "08001");
    uint64_t t0 = th_now_ms();
    run(rt, pid, TAG_QUERY, "SELECT 1");       /* the pool is down: at once */
    assert_string_equal(the_out.code, "08001");
    assert_true(th_now_ms() - t0 < 200);
    tr_pg_stats s;
    tr_pg_stats_get(the_pg, &s);
    assert_int_equal(s.pools_down, 1);
    assert_true(s.connect_failures >= 1);
    th_finish(rt);
}

static void query_from_an_actor(void **unused)
{
    (void)unused;
    if (!have_pg())
        skip();
    tr_runtime *rt = th_runtime(2);
    assert_int_equal(tr_pg_get(rt, &the_pg), 0);
    tr_pid pid = spawn_client(rt);
    run(rt, pid, TAG_QUERY, "SELECT 40 + 2");
    assert_true(the_out.ok);
    assert_string_equal(the_out.value, "42");
    run(rt, pid, TAG_QUERY, "SELECT 1/0");
    assert_false(the_out.ok);
    assert_string_equal(the_out.code, "22012");
    tr_pg_stats s;
    tr_pg_stats_get(the_pg, &s);
    assert_int_equal(s.queries, 2);
    assert_int_equal(s.errors, 1);
    assert_int_equal(s.connections, 1);
    th_finish(rt);
}

static void pinned_connection_from_another_thread(void **unused)
{
    (void)unused;
    if (!have_pg())
        skip();
    tr_runtime *rt = th_runtime(2);
    assert_int_equal(tr_pg_get(rt, &the_pg), 0);
    tr_pid pid = spawn_client(rt);
    run(rt, pid, TAG_ACQUIRE, NULL);
    assert_true(the_out.ok);
    tr_pg_conn *conn = the_out.conn;
    /* This thread is no worker: the queries travel through the post queue. */
    const char *steps[] = { "BEGIN", "CREATE TEMP TABLE t (x int)", "INSERT INTO t VALUES (7)",
                            "SELECT x FROM t" };
    for (size_t i = 0; i < sizeof steps / sizeof *steps; i++) {
        memset(&the_out, 0, sizeof the_out);
        tr_pg_query q = { steps[i], strlen(steps[i]), NULL, 0, 0 };
        assert_int_equal(tr_pg_submit(the_pg, conn, &q, on_done, &the_out), 0);
        assert_true(TH_WAIT_UNTIL(atomic_load(&the_out.done), 10000));
        assert_true(the_out.ok);
    }
    assert_string_equal(the_out.value, "7");
    tr_pg_stats s;
    tr_pg_stats_get(the_pg, &s);
    assert_int_equal(s.pinned, 1);
    tr_pg_release(conn);                       /* still in a transaction: rolled back */
    assert_true(TH_WAIT_UNTIL((tr_pg_stats_get(the_pg, &s), s.pinned == 0 && s.idle == 1),
                              10000));
    run(rt, pid, TAG_QUERY, "SELECT count(*) FROM pg_class WHERE relname = 't' AND relpersistence = 't'");
    assert_string_equal(the_out.value, "0");
    th_finish(rt);
}

static void freed_with_a_query_in_flight(void **unused)
{
    (void)unused;
    if (!have_pg())
        skip();
    tr_runtime *rt = th_runtime(1);
    assert_int_equal(tr_pg_get(rt, &the_pg), 0);
    tr_pid pid = spawn_client(rt);
    memset(&the_out, 0, sizeof the_out);
    the_sql = "SELECT pg_sleep(5)";
    assert_int_equal(tr_send(rt, pid, TAG_QUERY, NULL, 0), 0);
    tr_pg_stats s;
    assert_true(TH_WAIT_UNTIL((tr_pg_stats_get(the_pg, &s), s.inflight == 1), 5000));
    uint64_t t0 = th_now_ms();
    th_finish(rt);                             /* fails it, closes, frees everything */
    assert_true(atomic_load(&the_out.done));
    assert_string_equal(the_out.code, "08006");
    assert_true(th_now_ms() - t0 < 3000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(config_from_env),
        cmocka_unit_test(configure_validates),
        cmocka_unit_test(cannot_connect_fails_fast),
        cmocka_unit_test(query_from_an_actor),
        cmocka_unit_test(pinned_connection_from_another_thread),
        cmocka_unit_test(freed_with_a_query_in_flight),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
