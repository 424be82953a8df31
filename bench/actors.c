/*
 * bench/actors.c — C actor benchmarks. Each figure is the median of RUNS runs and is
 * printed as `BENCH <name> <value> <unit>`. What is measured mirrors
 * bench/erlang/actors_bench.erl so the two can be read side by side:
 *   actors.c.oneway       one actor sends N small messages to another (in batches of
 *                         1000 per turn, then a message to itself to go on, which is
 *                         how an actor yields); time until the receiver has them all
 *   actors.c.roundtrip    one actor tr_calls another (timeout 5 s, like
 *                         gen_server:call's default) and calls again on each reply
 *   actors.c.spawn_1m     seconds to spawn 1,000,000 idle actors from one thread
 *   actors.c.bytes_per_actor  resident memory growth / 1,000,000 for those actors
 *   actors.c.idle_cpu_pct CPU used by an idle runtime over 5 s, percent of one core
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "troupe.h"

#define RUNS 5
enum { TAG_GO = 1, TAG_MSG = 2, TAG_PING = 3 };

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return v[n / 2];
}

static tr_runtime *runtime(int workers)
{
    tr_config cfg;
    tr_config_init(&cfg);
    cfg.workers = workers;
    tr_runtime *rt;
    if (tr_runtime_new(&cfg, &rt) < 0 || tr_runtime_start(rt) < 0) {
        fprintf(stderr, "runtime failed\n");
        exit(1);
    }
    return rt;
}

static void finish(tr_runtime *rt)
{
    tr_runtime_stop(rt, -1);
    tr_runtime_wait(rt);
    tr_runtime_free(rt);
}

/* ---- one-way ---- */

static atomic_int done;
static long n_messages;

typedef struct { tr_pid to; long sent; } sender;
static int sender_init(tr_ctx *ctx, void *arg, void **state) { (void)ctx; *state = arg; return 0; }
static int sender_receive(tr_ctx *ctx, void *state, tr_msg *msg)
{
    (void)msg;
    sender *s = state;
    tr_runtime *rt = tr_ctx_runtime(ctx);
    long payload = 0;
    for (int i = 0; i < 1000 && s->sent < n_messages; i++, s->sent++) {
        payload = s->sent;
        if (tr_send(rt, s->to, TAG_MSG, &payload, sizeof payload) < 0)
            abort();
    }
    if (s->sent < n_messages)
        tr_send(rt, tr_self(ctx), TAG_GO, NULL, 0);
    return 0;
}
static const tr_behaviour sender_b = { "sender", sender_init, sender_receive, NULL };

static int counter_init(tr_ctx *ctx, void *arg, void **state) { (void)ctx; (void)arg; *state = calloc(1, sizeof(long)); return 0; }
static int counter_receive(tr_ctx *ctx, void *state, tr_msg *msg)
{
    (void)ctx; (void)msg;
    long *n = state;
    if (++*n == n_messages)
        atomic_store(&done, 1);
    return 0;
}
static void counter_terminate(tr_ctx *ctx, void *state, int reason) { (void)ctx; (void)reason; free(state); }
static const tr_behaviour counter_b = { "counter", counter_init, counter_receive, counter_terminate };

static double bench_oneway(int workers)
{
    tr_runtime *rt = runtime(workers);
    n_messages = 10000000;
    atomic_store(&done, 0);
    tr_pid c, s;
    sender st = { 0, 0 };
    tr_spawn(rt, &counter_b, NULL, NULL, &c);
    st.to = c;
    tr_spawn(rt, &sender_b, &st, NULL, &s);
    double t0 = now_s();
    tr_send(rt, s, TAG_GO, NULL, 0);
    while (!atomic_load(&done))
        usleep(200);
    double dt = now_s() - t0;
    finish(rt);
    return (double)n_messages / dt;
}

/* ---- round trip ---- */

typedef struct { tr_pid server; long left; } client;
static int client_init(tr_ctx *ctx, void *arg, void **state) { (void)ctx; *state = arg; return 0; }
static int client_receive(tr_ctx *ctx, void *state, tr_msg *msg)
{
    client *c = state;
    if (msg->kind == TR_MSG_TIMEOUT)
        abort();
    if (msg->kind == TR_MSG_REPLY && --c->left == 0) {
        atomic_store(&done, 1);
        return 0;
    }
    return tr_call(ctx, c->server, TAG_PING, NULL, 0, 5000, NULL);
}
static const tr_behaviour client_b = { "client", client_init, client_receive, NULL };

static int server_receive(tr_ctx *ctx, void *state, tr_msg *msg)
{
    (void)state;
    return tr_reply(tr_ctx_runtime(ctx), msg, TAG_PING, NULL, 0);
}
static const tr_behaviour server_b = { "server", NULL, server_receive, NULL };

static double bench_roundtrip(int workers)
{
    tr_runtime *rt = runtime(workers);
    long n = 3000000;
    atomic_store(&done, 0);
    tr_pid srv, cl;
    tr_spawn(rt, &server_b, NULL, NULL, &srv);
    client c = { srv, n + 1 };
    tr_spawn(rt, &client_b, &c, NULL, &cl);
    double t0 = now_s();
    tr_send(rt, cl, TAG_GO, NULL, 0);
    while (!atomic_load(&done))
        usleep(200);
    double dt = now_s() - t0;
    finish(rt);
    return (double)n / dt;
}

/* ---- spawn ---- */

static long rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, rss = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
            rss = 0;
        fclose(f);
    }
    return rss * sysconf(_SC_PAGESIZE);
}

static const tr_behaviour idle_b = { "idle", NULL, NULL, NULL };

/* Runs in a fresh child process, so the memory growth is not hidden by what an
 * earlier run left in the allocator's free lists. */
static void bench_spawn_child(int workers, double *secs, double *bytes)
{
    tr_config cfg;
    tr_config_init(&cfg);
    cfg.workers = workers;
    tr_runtime *rt;
    tr_runtime_new(&cfg, &rt);
    tr_runtime_start(rt);
    const int n = 1000000;
    long before = rss_bytes();
    double t0 = now_s();
    tr_pid pid;
    for (int i = 0; i < n; i++)
        if (tr_spawn(rt, &idle_b, NULL, NULL, &pid) < 0)
            abort();
    *secs = now_s() - t0;
    *bytes = (double)(rss_bytes() - before) / n;
    finish(rt);
}

static void bench_spawn(int workers, double *secs, double *bytes)
{
    int fd[2];
    double r[2] = { 0, 0 };
    if (pipe(fd) < 0)
        abort();
    pid_t child = fork();
    if (child == 0) {
        bench_spawn_child(workers, &r[0], &r[1]);
        if (write(fd[1], r, sizeof r) != sizeof r)
            _exit(1);
        _exit(0);
    }
    if (read(fd[0], r, sizeof r) != sizeof r)
        abort();
    waitpid(child, NULL, 0);
    close(fd[0]);
    close(fd[1]);
    *secs = r[0];
    *bytes = r[1];
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

int main(int argc, char **argv)
{
    int workers = 2;
    const char *only = argc > 1 ? argv[1] : NULL;
    double v[RUNS], w[RUNS];
    if (!only || strcmp(only, "oneway") == 0) {
        for (int i = 0; i < RUNS; i++)
            v[i] = bench_oneway(workers);
        printf("BENCH actors.c.oneway %.0f msgs/s\n", median(v, RUNS));
        fflush(stdout);
    }
    if (!only || strcmp(only, "roundtrip") == 0) {
        for (int i = 0; i < RUNS; i++)
            v[i] = bench_roundtrip(workers);
        printf("BENCH actors.c.roundtrip %.0f calls/s\n", median(v, RUNS));
        fflush(stdout);
    }
    if (!only || strcmp(only, "spawn") == 0) {
        for (int i = 0; i < RUNS; i++)
            bench_spawn(workers, &v[i], &w[i]);
        printf("BENCH actors.c.spawn_1m %.3f s\n", median(v, RUNS));
        printf("BENCH actors.c.bytes_per_actor %.0f bytes\n", median(w, RUNS));
        fflush(stdout);
    }
    if (!only || strcmp(only, "idle") == 0) {
        tr_runtime *rt = runtime(workers);
        usleep(100000);
        double c0 = cpu_seconds(), t0 = now_s();
        sleep(5);
        double pct = 100.0 * (cpu_seconds() - c0) / (now_s() - t0);
        printf("BENCH actors.c.idle_cpu_pct %.2f %%\n", pct);
        finish(rt);
    }
    return 0;
}
