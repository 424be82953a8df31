/*
 * embed.c — a C program that embeds troupe: it starts a runtime in background
 * threads, spawns actors under a supervisor, exchanges messages and calls with them
 * from its own thread, watches a crash being repaired, calls a business rule written
 * in Lua (rules.lua) with JSON, serves a Lua HTTP app (app.lua, or the file named by
 * its first argument) and reloads it, and shuts down cleanly.
 * Exits 0 when every step gave the expected answer.
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <troupe.h>

enum { DEPOSIT = 1, BALANCE = 2, CRASH = 3 };

/* An account: deposits are one-way messages, the balance is a call. */
static int account_init(tr_ctx *ctx, void *arg, void **state)
{
    (void)ctx; (void)arg;
    long *balance = tr_malloc(sizeof *balance);
    if (balance == NULL)
        return TR_ENOMEM;
    *balance = 0;
    *state = balance;
    return 0;
}

static int account_receive(tr_ctx *ctx, void *state, tr_msg *msg)
{
    long *balance = state, amount;
    switch (msg->tag) {
    case DEPOSIT:
        memcpy(&amount, msg->data, sizeof amount);
        *balance += amount;
        return 0;
    case BALANCE:
        return tr_reply(tr_ctx_runtime(ctx), msg, BALANCE, balance, sizeof *balance);
    case CRASH:
        return TR_EINVAL;   /* an error: the actor exits and its supervisor restarts it */
    }
    return 0;
}

static void account_terminate(tr_ctx *ctx, void *state, int reason)
{
    (void)ctx; (void)reason;
    tr_free(state);
}

static const tr_behaviour account = { "account", account_init, account_receive,
                                      account_terminate };

static long balance_of(tr_runtime *rt, tr_pid pid)
{
    tr_msg *reply = NULL;
    int rc = tr_call_sync(rt, pid, BALANCE, NULL, 0, 1000, &reply);
    if (rc < 0) {
        fprintf(stderr, "embed: call failed: %s\n", tr_strerror(rc));
        return -1;
    }
    long v;
    memcpy(&v, reply->data, sizeof v);
    tr_msg_free(reply);
    return v;
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* A Lua actor from rules.lua, called with an order as JSON. */
static int lua_rule(tr_runtime *rt)
{
    char err[256], *reply = NULL;
    tr_pid rules;
    if (tr_spawn_lua(rt, EMBED_DIR "/rules.lua", NULL, NULL, &rules, err, sizeof err) < 0) {
        fprintf(stderr, "embed: tr_spawn_lua: %s\n", err);
        return 0;
    }
    const char *order = "{\"items\":[{\"qty\":2,\"price\":30},{\"qty\":1,\"price\":50}]}";
    int rc = tr_lua_call_json(rt, rules, order, strlen(order), 1000, &reply, NULL, err,
                              sizeof err);
    printf("rules.lua priced %s: %s\n", order, rc == 0 ? reply : err);
    int ok = rc == 0 && strcmp(reply, "{\"total\":99}") == 0;   /* 110, 10% off */
    tr_free(reply);
    tr_kill(rt, rules, TR_EXIT_SHUTDOWN);
    return ok;
}

/* One HTTP/1.1 request to 127.0.0.1:port; the whole answer (the server closes). */
static int http_get(int port, const char *path, char *out, size_t n)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    char req[256];
    int len = snprintf(req, sizeof req,
                       "GET %s HTTP/1.1\r\nHost: embed\r\nConnection: close\r\n\r\n", path);
    size_t got = 0;
    ssize_t r = write(fd, req, (size_t)len);
    while (r == len && got < n - 1 && (r = read(fd, out + got, n - 1 - got)) > 0)
        got += (size_t)r;
    out[got] = '\0';
    close(fd);
    return (int)got;
}

/* Serves app.lua on a free port, asks it something, reloads it, asks again. */
static int serve_lua(tr_runtime *rt, const char *app)
{
    tr_http_config http;
    memset(&http, 0, sizeof http);
    http.script = app;           /* port 0: any free port; lua: the defaults */
    char err[512], answer[2048], status[1024];
    int rc = tr_http_start(rt, &http, err, sizeof err);
    if (rc < 0) {
        fprintf(stderr, "embed: tr_http_start: %s: %s\n", tr_strerror(rc), err);
        return 0;
    }
    int port = tr_http_port(rt);
    int ok = tr_http_start(rt, &http, err, sizeof err) == TR_EEXIST;   /* one per runtime */
    http_get(port, "/hello/embedder", answer, sizeof answer);
    printf("GET /hello/embedder on port %d: %s\n", port, strstr(answer, "\r\n\r\n") ?
           strstr(answer, "\r\n\r\n") + 4 : answer);
    ok = ok && strncmp(answer, "HTTP/1.1 200 ", 13) == 0 &&
             strstr(answer, "\"hello\":\"embedder\"") != NULL;
    http_get(port, "/nowhere", answer, sizeof answer);
    ok = ok && strncmp(answer, "HTTP/1.1 404 ", 13) == 0;

    uint64_t gen = 0;
    rc = tr_http_reload(rt, err, sizeof err, &gen);
    tr_http_status(rt, status, sizeof status);
    printf("reloaded: %s, generation %llu; status %s\n", rc == 0 ? "ok" : err,
           (unsigned long long)gen, status);
    ok = ok && rc == 0 && gen == 2 && strstr(status, "\"generation\":2") != NULL;
    http_get(port, "/hello/again", answer, sizeof answer);
    ok = ok && strstr(answer, "\"hello\":\"again\"") != NULL;
    ok = ok && tr_http_drain(rt, 2000) == 0;
    return ok;
}

int main(int argc, char **argv)
{
    tr_config cfg;
    tr_config_init(&cfg);
    cfg.workers = 2;
    tr_runtime *rt;
    int rc = tr_runtime_new(&cfg, &rt);
    if (rc < 0 || (rc = tr_runtime_start(rt)) < 0) {
        fprintf(stderr, "embed: %s\n", tr_strerror(rc));
        return 1;
    }

    tr_child_spec child = { "account", &account, NULL, TR_SPAWN_OPTS_INIT, TR_PERMANENT, 1000 };
    tr_sup_spec spec = { .strategy = TR_ONE_FOR_ONE, .intensity = 3, .period_ms = 5000,
                         .children = &child, .n_children = 1 };
    tr_pid sup;
    if ((rc = tr_supervisor_start(rt, &spec, NULL, &sup)) < 0) {
        fprintf(stderr, "embed: supervisor: %s\n", tr_strerror(rc));
        return 1;
    }
    tr_pid acct = tr_supervisor_child(rt, sup, "account");

    for (long i = 1; i <= 100; i++)
        tr_send(rt, acct, DEPOSIT, &i, sizeof i);
    long b = balance_of(rt, acct);
    printf("balance after 100 deposits: %ld\n", b);
    int ok = b == 5050;

    /* Crash it: the supervisor starts a fresh account under a new pid. */
    tr_send(rt, acct, CRASH, NULL, 0);
    tr_pid fresh = 0;
    for (int i = 0; i < 500 && (fresh == 0 || fresh == acct); i++) {
        sleep_ms(2);
        fresh = tr_supervisor_child(rt, sup, "account");
    }
    printf("restarted: old pid %s, new pid %s, balance %ld\n",
           tr_alive(rt, acct) ? "alive" : "gone", fresh != acct ? "fresh" : "same",
           balance_of(rt, fresh));
    ok = ok && !tr_alive(rt, acct) && fresh != acct && balance_of(rt, fresh) == 0;
    ok = ok && tr_send(rt, acct, DEPOSIT, &b, sizeof b) == TR_ENOPROC;

    ok = lua_rule(rt) && ok;
    ok = serve_lua(rt, argc > 1 ? argv[1] : EMBED_DIR "/app.lua") && ok;

    tr_runtime_stop(rt, 2000);
    tr_runtime_wait(rt);
    tr_stats st;
    tr_runtime_stats(rt, &st);
    printf("stopped: %llu spawned, %llu exited, %llu messages delivered\n",
           (unsigned long long)st.spawned, (unsigned long long)st.exited,
           (unsigned long long)st.delivered);
    ok = ok && st.actors_live == 0;
    tr_runtime_free(rt);
    printf("%s\n", ok ? "embed: ok" : "embed: FAILED");
    return ok ? 0 : 1;
}
