/*
 * main.c — the troupe command: a thin embedder of libtroupe.
 *   troupe run SCRIPT.lua [ARGS...]   runs the script as the main actor
 *   troupe eval 'CODE'                runs CODE, prints what it returns
 *   troupe test [PATH...]             runs busted specs inside the runtime
 * Options: --workers N, --env development|production, --listen HOST:PORT, --unsafe,
 * and the TROUPE_* environment variables (README). SIGINT/SIGTERM stop gracefully;
 * a second one exits at once.
 */
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "lactor.h"

static int the_deadline_ms = 30000;   /* graceful stop: then running work is interrupted */

typedef struct options {
    const char *cmd;
    int         workers;
    const char *env;
    const char *listen;
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
            "       troupe test [PATH...]             run busted specs (default: spec/)\n"
            "       troupe --version | --help\n"
            "options: --workers N  --env development|production  --listen HOST:PORT\n"
            "         --unsafe (allow os.execute, io.*, C modules)\n"
            "         --vm-memory BYTES (per actor VM, default 64 MB)\n"
            "         --vm-budget MS (CPU per message, default 1000)\n"
            "         --stop-deadline MS (graceful stop, default 30000; then work is interrupted)\n"
            "environment: TROUPE_WORKERS TROUPE_ENV TROUPE_LISTEN TROUPE_LUA_PATH\n"
            "             TROUPE_VM_MEMORY TROUPE_VM_BUDGET_MS TROUPE_STOP_DEADLINE_MS\n");
}

static int parse(int argc, char **argv, options *o)
{
    memset(o, 0, sizeof(*o));
    const char *w = getenv("TROUPE_WORKERS");
    o->workers = w ? atoi(w) : 0;
    o->env = getenv("TROUPE_ENV") ? getenv("TROUPE_ENV") : "production";
    o->listen = getenv("TROUPE_LISTEN");
    if (getenv("TROUPE_STOP_DEADLINE_MS"))
        the_deadline_ms = atoi(getenv("TROUPE_STOP_DEADLINE_MS"));
    if (getenv("TROUPE_VM_MEMORY"))
        o->vm_memory = strtoull(getenv("TROUPE_VM_MEMORY"), NULL, 10);
    if (getenv("TROUPE_VM_BUDGET_MS"))
        o->vm_budget_ms = strtoull(getenv("TROUPE_VM_BUDGET_MS"), NULL, 10);
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--workers") == 0 && i + 1 < argc)
            o->workers = atoi(argv[++i]);
        else if (strcmp(a, "--env") == 0 && i + 1 < argc)
            o->env = argv[++i];
        else if (strcmp(a, "--listen") == 0 && i + 1 < argc)
            o->listen = argv[++i];
        else if (strcmp(a, "--unsafe") == 0)
            o->unsafe = 1;
        else if (strcmp(a, "--stop-deadline") == 0 && i + 1 < argc)
            the_deadline_ms = atoi(argv[++i]);
        else if (strcmp(a, "--vm-memory") == 0 && i + 1 < argc)
            o->vm_memory = strtoull(argv[++i], NULL, 10);
        else if (strcmp(a, "--vm-budget") == 0 && i + 1 < argc)
            o->vm_budget_ms = strtoull(argv[++i], NULL, 10);
        else if (a[0] == '-' && a[1] == '-' && o->cmd == NULL)
            return -1;
        else if (o->cmd == NULL)
            o->cmd = a;
        else
            break;   /* the rest belongs to the script */
    }
    o->nargs = argc - i;
    o->args = argv + i;
    if (strcmp(o->env, "development") != 0 && strcmp(o->env, "production") != 0)
        return -1;
    return o->cmd ? 0 : -1;
}

/* The framework's Lua files: next to the binary in the source tree (build/troupe ->
 * scripts/), or installed (bin/troupe -> share/troupe/lua). */
static void lua_path(char *out, size_t n, const char *script_dir, int system_paths)
{
    char exe[PATH_MAX], fw[PATH_MAX] = "";
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0) {
        exe[len] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash)
            *slash = '\0';
        char probe[PATH_MAX + 64];
        const char *cands[] = { "/../scripts", "/../../scripts", "/../share/troupe/lua" };
        for (int i = 0; i < 3; i++) {
            snprintf(probe, sizeof probe, "%s%s/troupe", exe, cands[i]);
            if (access(probe, F_OK) == 0) {
                snprintf(fw, sizeof fw, "%s%s", exe, cands[i]);
                break;
            }
        }
    }
    const char *extra = getenv("TROUPE_LUA_PATH");
    int plen = snprintf(out, n, "%s%s%s/?.lua;%s/?/init.lua;%s/?.lua;%s/?/init.lua;./?.lua%s",
             extra ? extra : "", extra ? ";" : "", fw, fw, script_dir, script_dir,
             system_paths ? ";/usr/local/share/lua/5.4/?.lua;/usr/share/lua/5.4/?.lua;"
                            "/usr/share/lua/5.4/?/init.lua" : "");
    if (plen < 0 || (size_t)plen >= n)
        fprintf(stderr, "troupe: warning: package.path truncated (paths too long)\n");
}

static tr_runtime *the_rt;

static void *signal_thread(void *arg)
{
    sigset_t *set = arg;
    int sig, count = 0;
    for (;;) {
        if (sigwait(set, &sig) != 0)
            continue;
        if (sig == SIGHUP)
            continue;   /* reload arrives with the hot-reload work */
        if (++count > 1)
            _exit(130);
        fprintf(stderr, "troupe: stopping (signal %d; again to exit at once)\n", sig);
        tr_runtime_stop(the_rt, the_deadline_ms);
    }
    return NULL;
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

    tr_lua_main_result result = { .print_results = eval, .stop_deadline_ms = 5000 };
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
    tr_runtime_free(the_rt);
    return result.done && result.ok ? 0 : 1;
}
