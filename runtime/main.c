/*
 * main.c — the troupe command: a thin embedder of libtroupe.
 *   troupe run SCRIPT.lua [ARGS...]   runs the script as the main actor
 *   troupe eval 'CODE'                runs CODE, prints what it returns
 *   troupe test [PATH...]             runs busted specs inside the runtime
 * Options: --workers N, --env development|production, --listen HOST:PORT, --unsafe,
 * and the TROUPE_* environment variables (README). SIGINT/SIGTERM stop gracefully;
 * a second one exits at once.
 */
#include <errno.h>
#include <limits.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "control.h"
#include "http.h"
#include "lactor.h"

static int the_deadline_ms = 30000;   /* graceful stop: then running work is interrupted */

typedef struct options {
    const char *cmd;
    int         workers;
    const char *env;
    const char *listen;
    const char *control;       /* control socket path (troupe reload|status) */
    const char *admin;         /* HOST:PORT of the admin endpoint (loopback) */
    int         watch;         /* reload when a .lua file of the app's directory changes */
    int         unsafe;
    size_t      vm_memory;     /* bytes per actor VM (0: 64 MB) */
    uint64_t    vm_budget_ms;  /* CPU per message (0: 1000) */
    int         nargs;
    char      **args;          /* script / code / paths, then the script's arguments */
} options;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: troupe run SCRIPT.lua [ARGS...]   run a script as the main actor\n"
            "       troupe eval 'CODE'                run Lua code, print its results\n"
            "       troupe reload --control PATH      reload a running server's code\n"
            "       troupe status --control PATH      print a running server's status\n"
            "       troupe test [PATH...]             run busted specs (default: spec/)\n"
            "       troupe --version | --help\n"
            "options: --workers N  --env development|production  --listen HOST:PORT\n"
            "         --unsafe (allow os.execute, io.*, C modules)\n"
            "         --control PATH (control socket for troupe reload/status)\n"
            "         --admin 127.0.0.1:PORT (admin HTTP endpoint: POST /reload, GET /status)\n"
            "         --watch (development: reload when a .lua file changes)\n"
            "         --vm-memory BYTES (per actor VM, default 64 MB)\n"
            "         --vm-budget MS (CPU per message, default 1000)\n"
            "         --stop-deadline MS (graceful stop, default 30000; then work is interrupted)\n"
            "environment: TROUPE_WORKERS TROUPE_ENV TROUPE_LISTEN TROUPE_LUA_PATH\n"
            "             TROUPE_CONTROL TROUPE_ADMIN\n"
            "             TROUPE_VM_MEMORY TROUPE_VM_BUDGET_MS TROUPE_STOP_DEADLINE_MS\n"
            "             TROUPE_HTTP_BODY_LIMIT TROUPE_HTTP_HEADER_TIMEOUT_MS\n"
            "             TROUPE_HTTP_BODY_TIMEOUT_MS TROUPE_HTTP_IDLE_TIMEOUT_MS\n"
            "             TROUPE_HTTP_MAX_CONNS (per worker)\n");
}

static int parse(int argc, char **argv, options *o)
{
    memset(o, 0, sizeof(*o));
    const char *w = getenv("TROUPE_WORKERS");
    o->workers = w ? atoi(w) : 0;
    o->env = getenv("TROUPE_ENV") ? getenv("TROUPE_ENV") : "production";
    o->listen = getenv("TROUPE_LISTEN");
    o->control = getenv("TROUPE_CONTROL");
    o->admin = getenv("TROUPE_ADMIN");
    if (getenv("TROUPE_STOP_DEADLINE_MS"))
        the_deadline_ms = atoi(getenv("TROUPE_STOP_DEADLINE_MS"));
    if (getenv("TROUPE_VM_MEMORY"))
        o->vm_memory = strtoull(getenv("TROUPE_VM_MEMORY"), NULL, 10);
    if (getenv("TROUPE_VM_BUDGET_MS"))
        o->vm_budget_ms = strtoull(getenv("TROUPE_VM_BUDGET_MS"), NULL, 10);
    /* Options may come before or after the command and its script (DESIGN.md:
     * `troupe run APP.lua --listen ...`); after "--" everything is the script's. */
    static char *positional[256];
    int np = 0, opts_done = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (opts_done || a[0] != '-' || a[1] != '-') {
            if (np == (int)(sizeof positional / sizeof *positional))
                return -1;
            positional[np++] = argv[i];
        } else if (strcmp(a, "--") == 0)
            opts_done = 1;
        else if (strcmp(a, "--workers") == 0 && i + 1 < argc)
            o->workers = atoi(argv[++i]);
        else if (strcmp(a, "--env") == 0 && i + 1 < argc)
            o->env = argv[++i];
        else if (strcmp(a, "--listen") == 0 && i + 1 < argc)
            o->listen = argv[++i];
        else if (strcmp(a, "--unsafe") == 0)
            o->unsafe = 1;
        else if (strcmp(a, "--control") == 0 && i + 1 < argc)
            o->control = argv[++i];
        else if (strcmp(a, "--admin") == 0 && i + 1 < argc)
            o->admin = argv[++i];
        else if (strcmp(a, "--watch") == 0)
            o->watch = 1;
        else if (strcmp(a, "--stop-deadline") == 0 && i + 1 < argc)
            the_deadline_ms = atoi(argv[++i]);
        else if (strcmp(a, "--vm-memory") == 0 && i + 1 < argc)
            o->vm_memory = strtoull(argv[++i], NULL, 10);
        else if (strcmp(a, "--vm-budget") == 0 && i + 1 < argc)
            o->vm_budget_ms = strtoull(argv[++i], NULL, 10);
        else if (o->cmd == NULL)
            return -1;
        else if (np < (int)(sizeof positional / sizeof *positional))
            positional[np++] = argv[i];   /* an option of the script's own */
        else
            return -1;
    }
    if (np > 0)
        o->cmd = positional[0];
    o->nargs = np > 0 ? np - 1 : 0;
    o->args = positional + 1;
    if (strcmp(o->env, "development") != 0 && strcmp(o->env, "production") != 0)
        return -1;
    return o->cmd ? 0 : -1;
}

/* The framework's Lua files and the script's directory (tr_lua_default_path); troupe
 * test adds the system's Lua directories, where busted is. */
static void lua_path(char *out, size_t n, const char *script_dir, int system_paths)
{
    static const char sys[] = ";/usr/local/share/lua/5.4/?.lua;/usr/share/lua/5.4/?.lua;"
                              "/usr/share/lua/5.4/?/init.lua";
    size_t len;
    if (tr_lua_default_path(out, n, script_dir) < 0 ||
        (system_paths && (len = strlen(out)) + sizeof sys > n)) {
        fprintf(stderr, "troupe: warning: package.path truncated (paths too long)\n");
        return;
    }
    if (system_paths)
        memcpy(out + len, sys, sizeof sys);
}

static tr_runtime *the_rt;
static options the_opts;
static char the_lua_path[4 * PATH_MAX];

/* The main script returned an app: serve it on --listen (default 127.0.0.1:8080),
 * a handler VM per worker. */
static int serve(tr_runtime *rt, const char *script, char *err, size_t errlen)
{
    const options *o = &the_opts;
    char host[256] = "127.0.0.1";
    int port = 8080;
    if (o->listen) {
        const char *colon = strrchr(o->listen, ':');
        if (colon == NULL) {
            port = atoi(o->listen);
        } else {
            size_t hl = (size_t)(colon - o->listen);
            if (hl >= sizeof host) {
                snprintf(err, errlen, "--listen: address too long");
                return -1;
            }
            if (hl > 0) {
                const char *h = o->listen;
                if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']') {   /* [::1]:8080 */
                    h++;
                    hl -= 2;
                }
                memcpy(host, h, hl);
                host[hl] = '\0';
            }
            port = atoi(colon + 1);
        }
        if (port < 0 || port > 65535) {
            snprintf(err, errlen, "--listen: bad port in '%s'", o->listen);
            return -1;
        }
    }
    tr_http_config ho;
    memset(&ho, 0, sizeof ho);
    ho.host = host;
    ho.port = port;
    ho.script = script;
    ho.lua.lua_path = the_lua_path;
    ho.lua.unsafe = o->unsafe;
    ho.lua.mem_limit = o->vm_memory;
    ho.lua.budget_ms = o->vm_budget_ms;
    ho.development = strcmp(o->env, "development") == 0;
    /* Server limits (README: configuration); 0 or unset keeps the default. */
    const char *v;
    if ((v = getenv("TROUPE_HTTP_BODY_LIMIT")))
        ho.body_limit = strtoull(v, NULL, 10);
    if ((v = getenv("TROUPE_HTTP_HEADER_TIMEOUT_MS")))
        ho.header_timeout_ms = (uint32_t)strtoul(v, NULL, 10);
    if ((v = getenv("TROUPE_HTTP_BODY_TIMEOUT_MS")))
        ho.body_timeout_ms = (uint32_t)strtoul(v, NULL, 10);
    if ((v = getenv("TROUPE_HTTP_IDLE_TIMEOUT_MS")))
        ho.idle_timeout_ms = (uint32_t)strtoul(v, NULL, 10);
    if ((v = getenv("TROUPE_HTTP_MAX_CONNS")))
        ho.max_conns = (uint32_t)strtoul(v, NULL, 10);
    if (tr_http_start(rt, &ho, err, errlen) < 0)
        return -1;
    fprintf(stderr, "troupe: serving http://%s%s%s:%d (%d workers, %s)\n",
            strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "",
            tr_http_port(rt), tr_runtime_workers(rt), o->env);
    return 0;
}

/* The graceful stop's thread is joined before the runtime is freed: tr_runtime_stop
 * walks the actor table, and the last actor may exit (so main frees the table)
 * before that walk is over. */
static pthread_mutex_t the_stopper_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_t the_stopper;
static int the_stopper_joinable;

/* Graceful shutdown: the server stops accepting and finishes the requests in
 * flight, then every actor stops (terminate runs), within the deadline. */
static void *graceful_stop(void *arg)
{
    (void)arg;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    tr_http_drain(the_rt, the_deadline_ms);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long spent = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    long left = the_deadline_ms - spent;
    tr_runtime_stop(the_rt, left > 100 ? (int)left : 100);
    return NULL;
}

static void *signal_thread(void *arg)
{
    sigset_t *set = arg;
    int sig, count = 0;
    for (;;) {
        if (sigwait(set, &sig) != 0)
            continue;
        if (sig == SIGHUP) {
            char out[1024];
            tr_control_reload(the_rt, out, sizeof out);
            continue;
        }
        if (++count > 1)
            _exit(130);
        fprintf(stderr, "troupe: stopping (signal %d; again to exit at once)\n", sig);
        pthread_mutex_lock(&the_stopper_lock);
        if (pthread_create(&the_stopper, NULL, graceful_stop, NULL) == 0)
            the_stopper_joinable = 1;
        else
            tr_runtime_stop(the_rt, the_deadline_ms);
        pthread_mutex_unlock(&the_stopper_lock);
    }
    return NULL;
}

/* troupe reload|status --control PATH: one request on the control socket. */
static int control_command(const char *cmd, const char *path)
{
    if (path == NULL) {
        fprintf(stderr, "troupe %s: needs --control PATH (the server's control socket)\n", cmd);
        return 2;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        fprintf(stderr, "troupe %s: cannot reach the server at %s: %s\n", cmd, path,
                strerror(errno));
        if (fd >= 0)
            close(fd);
        return 1;
    }
    char line[64], out[4096];
    int n = snprintf(line, sizeof line, "%s\n", cmd);
    if (write(fd, line, (size_t)n) != n) {
        close(fd);
        return 1;
    }
    size_t len = 0;
    ssize_t r;
    while (len < sizeof out - 1 && (r = read(fd, out + len, sizeof out - 1 - len)) > 0)
        len += (size_t)r;
    out[len] = '\0';
    close(fd);
    fputs(out, stdout);
    if (strcmp(cmd, "reload") == 0)
        return strstr(out, "\"ok\":true") ? 0 : 1;
    return len > 0 ? 0 : 1;
}

/* Encodes the list of strings as a Lua array with the codec. */
static int encode_args(char **args, int n, tr_buf *out)
{
    lua_State *L = luaL_newstate();
    if (L == NULL)
        return TR_ENOMEM;
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_pushstring(L, args[i]);
        lua_rawseti(L, -2, i + 1);
    }
    const char *err;
    int rc = tr_codec_encode(L, -1, out, &err);
    lua_close(L);
    return rc;
}

static const char test_main[] =
    "local paths = { ... }\n"
    "local code = 0\n"
    "os.exit = function(c)\n"
    "  if c == nil or c == true then c = 0 elseif c == false then c = 1 end\n"
    "  code = c\n"
    "  error(setmetatable({}, { __tostring = function() return 'exit ' .. c end }), 0)\n"
    "end\n"
    "arg = { '--output=plainTerminal' }\n"
    "for i = 1, #paths do arg[#arg + 1] = paths[i] end\n"
    "if #paths == 0 then arg[#arg + 1] = 'spec' end\n"
    "local ok, err = pcall(require('busted.runner'), { standalone = false })\n"
    "if not ok and code == 0 then error(err, 0) end\n"
    "if code ~= 0 then error('specs failed', 0) end\n";

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--version") == 0) {
        printf("troupe %s (Lua 5.4)\n", TROUPE_VERSION);
        return 0;
    }
    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage(stdout);
        return 0;
    }
    options o;
    if (parse(argc, argv, &o) < 0) {
        usage(stderr);
        return 2;
    }
    if (strcmp(o.cmd, "reload") == 0 || strcmp(o.cmd, "status") == 0)
        return control_command(o.cmd, o.control);
    int run = strcmp(o.cmd, "run") == 0, eval = strcmp(o.cmd, "eval") == 0,
        test = strcmp(o.cmd, "test") == 0;
    if (!run && !eval && !test) {
        fprintf(stderr, "troupe: unknown command '%s'\n", o.cmd);
        usage(stderr);
        return 2;
    }
    if ((run || eval) && o.nargs < 1) {
        usage(stderr);
        return 2;
    }

    tr_lua_spawn req;
    memset(&req, 0, sizeof req);
    char dir[PATH_MAX] = ".";
    char path[4 * PATH_MAX];
    tr_buf args = { 0 };
    int rc = 0;
    if (run) {
        req.script = o.args[0];
        const char *slash = strrchr(req.script, '/');
        if (slash)
            snprintf(dir, sizeof dir, "%.*s", (int)(slash - req.script), req.script);
        rc = encode_args(o.args + 1, o.nargs - 1, &args);
    } else if (eval) {
        req.script = "=eval";
        req.code = o.args[0];
        rc = encode_args(NULL, 0, &args);
    } else {
        req.script = "=test";
        req.code = test_main;
        rc = encode_args(o.args, o.nargs, &args);
    }
    if (rc < 0) {
        fprintf(stderr, "troupe: %s\n", tr_strerror(rc));
        return 1;
    }
    lua_path(path, sizeof path, dir, test);
    snprintf(the_lua_path, sizeof the_lua_path, "%s", path);
    the_opts = o;
    /* Every VM (handler VMs and actors) reads the environment's name from here. */
    setenv("TROUPE_ENV", o.env, 1);
    req.args = args.data;
    req.args_len = args.len;
    req.main = 1;
    req.vm.lua_path = path;
    req.vm.unsafe = o.unsafe || test;
    req.vm.budget_ms = UINT64_MAX;     /* the top level runs as long as it needs */
    req.vm.child_budget_ms = o.vm_budget_ms ? o.vm_budget_ms : 1000;
    req.vm.mem_limit = o.vm_memory;

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    tr_config cfg;
    tr_config_init(&cfg);
    cfg.workers = o.workers;
    if ((rc = tr_runtime_new(&cfg, &the_rt)) < 0) {
        fprintf(stderr, "troupe: %s\n", tr_strerror(rc));
        return 1;
    }
    pthread_t sig;
    pthread_create(&sig, NULL, signal_thread, &set);
    pthread_detach(sig);

    if (run && (o.control || o.admin || o.watch)) {
        tr_control_opts co = { o.control, NULL, 0, o.watch ? dir : NULL };
        char ahost[256];
        if (o.admin) {
            const char *colon = strrchr(o.admin, ':');
            size_t hl = colon ? (size_t)(colon - o.admin) : 0;
            snprintf(ahost, sizeof ahost, "%.*s", (int)(hl ? hl : 9), hl ? o.admin : "127.0.0.1");
            co.admin_host = ahost;
            co.admin_port = atoi(colon ? colon + 1 : o.admin);
        }
        char err[512];
        if (tr_control_start(the_rt, &co, err, sizeof err) < 0) {
            fprintf(stderr, "troupe: %s\n", err);
            tr_buf_free(&args);
            tr_runtime_free(the_rt);
            return 1;
        }
        if (o.admin)
            fprintf(stderr, "troupe: admin endpoint on http://127.0.0.1:%d (POST /reload, "
                            "GET /status)\n", tr_control_admin_port());
    }

    tr_lua_main_result result = { .print_results = eval, .stop_deadline_ms = 5000,
                                  .serve = run ? serve : NULL };
    tr_lua_main_watch(&result);
    tr_pid main_pid;
    if ((rc = tr_lua_spawn_actor(the_rt, &req, NULL, &main_pid)) < 0) {
        fprintf(stderr, "troupe: %s\n", req.err);
        tr_buf_free(&args);
        tr_runtime_free(the_rt);
        return 1;
    }
    tr_buf_free(&args);
    tr_send(the_rt, main_pid, TR_LUA_TAG_START, NULL, 0);
    tr_runtime_run(the_rt);
    pthread_mutex_lock(&the_stopper_lock);
    if (the_stopper_joinable)
        pthread_join(the_stopper, NULL);
    the_stopper_joinable = 0;
    pthread_mutex_unlock(&the_stopper_lock);
    tr_control_stop();
    tr_runtime_free(the_rt);
    return result.done && result.ok ? 0 : 1;
}
