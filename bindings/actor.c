/*
 * bindings/actor.c — the troupe.actor Lua module: thin checks over the C API.
 * Misuse (a non-pid where a pid goes, a value that cannot travel) raises; an
 * operational failure (the actor is gone, the mailbox is full, a timeout) returns
 * nil and a short reason. Pids are light userdata (see runtime/lua/codec.h).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>

#include "html.h"
#include "json.h"
#include "lactor.h"

int luaopen_troupe_redis(lua_State *L);   /* bindings/redis.c */
int luaopen_troupe_pg(lua_State *L);      /* bindings/pg.c */

/* The actor this state belongs to. The module's functions are light C functions
 * (no upvalue: nothing allocated per actor for them), so it comes from the
 * registry. */
static tr_lactor *self_actor(lua_State *L)
{
    tr_lactor *la = tr_lactor_of(L);
    if (la == NULL || tr_lactor_ctx(la) == NULL)
        luaL_error(L, "troupe.actor: not inside an actor");
    return la;
}

static tr_pid check_pid(lua_State *L, int idx)
{
    tr_pid pid = tr_codec_topid(L, idx);
    if (pid == TR_PID_NONE)
        luaL_typeerror(L, idx, "pid");
    return pid;
}

/* nil, reason for an operational failure. */
static int fail(lua_State *L, int rc)
{
    lua_pushnil(L);
    switch (rc) {
    case TR_ENOPROC:   lua_pushliteral(L, "noproc"); break;
    case TR_EOVERLOAD: lua_pushliteral(L, "overload"); break;
    case TR_ETIMEDOUT: lua_pushliteral(L, "timeout"); break;
    case TR_ESTOPPED:  lua_pushliteral(L, "stopped"); break;
    case TR_EEXIST:    lua_pushliteral(L, "exists"); break;
    default:           lua_pushstring(L, tr_strerror(rc)); break;
    }
    return 2;
}

/* true, or nil and the reason. */
static int done(lua_State *L, int rc)
{
    if (rc < 0)
        return fail(L, rc);
    lua_pushboolean(L, 1);
    return 1;
}

/* Encodes the value at idx into b, or raises with the codec's reason. */
static void encode_arg(lua_State *L, int idx, tr_buf *b)
{
    const char *err = NULL;
    int rc = tr_codec_encode(L, idx, b, &err);
    if (rc == TR_ENOMEM) {
        tr_buf_free(b);
        luaL_error(L, "not enough memory");
    }
    if (rc < 0) {
        tr_buf_free(b);
        luaL_argerror(L, idx, err);
    }
}

/* Seconds (number) to milliseconds; nil: dflt; math.huge or negative: -1 (none). */
static int opt_ms(lua_State *L, int idx, int dflt)
{
    if (lua_isnoneornil(L, idx))
        return dflt;
    lua_Number s = luaL_checknumber(L, idx);
    if (isnan(s))
        return luaL_argerror(L, idx, "a number of seconds, not NaN");
    if (s < 0 || s >= 2147483.0)
        return -1;
    return (int)(s * 1000 + 0.5);
}

static int l_self(lua_State *L)
{
    tr_codec_pushpid(L, tr_self(tr_lactor_ctx(self_actor(L))));
    return 1;
}

static int l_send(lua_State *L)
{
    tr_lactor *la = self_actor(L);
    tr_pid to = check_pid(L, 1);
    luaL_checkany(L, 2);
    tr_buf b = { 0 };
    encode_arg(L, 2, &b);
    int rc = tr_send(tr_ctx_runtime(tr_lactor_ctx(la)), to, TR_LUA_TAG_VALUE, b.data, b.len);
    tr_buf_free(&b);
    return done(L, rc);
}

static int l_call(lua_State *L)
{
    tr_lactor *la = self_actor(L);
    tr_pid to = check_pid(L, 1);
    luaL_checkany(L, 2);
    int ms = opt_ms(L, 3, 5000);
    tr_buf b = { 0 };
    encode_arg(L, 2, &b);
    uint64_t ref;
    if (!lua_isyieldable(L)) {
        tr_buf_free(&b);
        return luaL_error(L, "troupe: actor.call cannot wait here (only in a handler or "
                             "the main script, not in init or terminate)");
    }
    int rc = tr_call(tr_lactor_ctx(la), to, TR_LUA_TAG_VALUE, b.data, b.len, ms, &ref);
    tr_buf_free(&b);
    if (rc < 0)
        return fail(L, rc);
    return tr_lactor_wait(L, ref);
}

static int l_sleep(lua_State *L)
{
    tr_lactor *la = self_actor(L);
    int ms = opt_ms(L, 1, 0);
    if (ms < 0)
        return luaL_argerror(L, 1, "a finite number of seconds");
    if (!lua_isyieldable(L))
        return luaL_error(L, "troupe: actor.sleep cannot wait here");
    tr_ctx *ctx = tr_lactor_ctx(la);
    static _Atomic uint64_t wake_refs;
    uint64_t ref = (1ull << 62) | ++wake_refs;
    int rc = tr_send_after(tr_ctx_runtime(ctx), tr_self(ctx), TR_LUA_TAG_WAKE, &ref,
                           sizeof ref, (uint64_t)ms, NULL);
    if (rc < 0)
        return fail(L, rc);
    return tr_lactor_wait(L, ref);
}

/* actor.reload(script) -> n: the Lua actors spawned from script upgrade their code
 * at their next message (tr_lua_upgrade_all); with no script, those whose file
 * changed on disk. */
static int l_reload(lua_State *L)
{
    tr_lactor *la = self_actor(L);
    const char *script = luaL_optstring(L, 1, NULL);
    lua_pushinteger(L, tr_lua_upgrade_all(tr_ctx_runtime(tr_lactor_ctx(la)), script));
    return 1;
}

static int l_exit(lua_State *L)
{
    tr_lactor *la = self_actor(L);
    tr_exit(tr_lactor_ctx(la), tr_lua_reason_code(L, 1));
    return 0;
}

static int l_kill(lua_State *L)
{
    tr_lactor *la = self_actor(L);
    tr_pid pid = check_pid(L, 1);
    int rc = tr_kill(tr_ctx_runtime(tr_lactor_ctx(la)), pid, tr_lua_reason_code(L, 2));
    return done(L, rc);
}

static int l_link(lua_State *L)
{
    tr_lactor *la = self_actor(L);
    int rc = tr_link(tr_lactor_ctx(la), check_pid(L, 1));
    return done(L, rc);
}

static int l_unlink(lua_State *L)
{
    tr_lactor *la = self_actor(L);
    int rc = tr_unlink(tr_lactor_ctx(la), check_pid(L, 1));
    return done(L, rc);
}

static int l_monitor(lua_State *L)
{
    tr_lactor *la = self_actor(L);
    uint64_t ref;
    int rc = tr_monitor(tr_lactor_ctx(la), check_pid(L, 1), &ref);
    if (rc < 0)
        return fail(L, rc);
    lua_pushinteger(L, (lua_Integer)ref);
    return 1;
}

static int l_demonitor(lua_State *L)
{
    tr_lactor *la = self_actor(L);
    int rc = tr_demonitor(tr_lactor_ctx(la), (uint64_t)luaL_checkinteger(L, 1));
    return done(L, rc);
}

static int l_trap_exit(lua_State *L)
{
    tr_lactor *la = self_actor(L);
    tr_trap_exit(tr_lactor_ctx(la), lua_toboolean(L, 1));
    return 0;
}

static int timer(lua_State *L, int every)
{
    tr_lactor *la = self_actor(L);
    int ms = opt_ms(L, 1, -2);
    if (ms < 0 || (every && ms == 0))
        return luaL_argerror(L, 1, "a positive number of seconds");
    luaL_checkany(L, 2);
    tr_ctx *ctx = tr_lactor_ctx(la);
    tr_pid to = lua_isnoneornil(L, 3) ? tr_self(ctx) : check_pid(L, 3);
    tr_buf b = { 0 };
    encode_arg(L, 2, &b);
    uint64_t id;
    int rc = (every ? tr_send_every : tr_send_after)(tr_ctx_runtime(ctx), to,
                                                     TR_LUA_TAG_VALUE, b.data, b.len,
                                                     (uint64_t)ms, &id);
    tr_buf_free(&b);
    if (rc < 0)
        return fail(L, rc);
    lua_pushinteger(L, (lua_Integer)id);
    return 1;
}

static int l_after(lua_State *L) { return timer(L, 0); }
static int l_every(lua_State *L) { return timer(L, 1); }

static int l_cancel(lua_State *L)
{
    tr_lactor *la = self_actor(L);
    int rc = tr_timer_cancel(tr_ctx_runtime(tr_lactor_ctx(la)),
                             (uint64_t)luaL_checkinteger(L, 1));
    return done(L, rc);
}

static int l_register(lua_State *L)
{
    tr_lactor *la = self_actor(L);
    tr_ctx *ctx = tr_lactor_ctx(la);
    const char *name = luaL_checkstring(L, 1);
    tr_pid pid = lua_isnoneornil(L, 2) ? tr_self(ctx) : check_pid(L, 2);
    int rc = tr_register(tr_ctx_runtime(ctx), name, pid);
    if (rc == TR_EINVAL)
        return luaL_argerror(L, 1, "a name of 1 to 255 bytes");
    return done(L, rc);
}

static int l_unregister(lua_State *L)
{
    tr_lactor *la = self_actor(L);
    int rc = tr_unregister(tr_ctx_runtime(tr_lactor_ctx(la)), luaL_checkstring(L, 1));
    lua_pushboolean(L, rc == 0);
    return 1;
}

static int l_whereis(lua_State *L)
{
    tr_lactor *la = self_actor(L);
    tr_pid pid = tr_whereis(tr_ctx_runtime(tr_lactor_ctx(la)), luaL_checkstring(L, 1));
    if (pid == TR_PID_NONE)
        lua_pushnil(L);
    else
        tr_codec_pushpid(L, pid);
    return 1;
}

static int l_alive(lua_State *L)
{
    tr_lactor *la = self_actor(L);
    lua_pushboolean(L, tr_alive(tr_ctx_runtime(tr_lactor_ctx(la)), check_pid(L, 1)));
    return 1;
}

static int l_now(lua_State *L)
{
    lua_pushnumber(L, (lua_Number)tr_lvm_now_ns() / 1e9);
    return 1;
}

/* ---- spawn ---- */

static int file_exists(const char *path)
{
    return access(path, R_OK) == 0;
}

/* Resolves a script path or module name to a file and pushes the path; 0. For a
 * module not found: pushes the reason instead and returns -1. */
static int resolve_script(lua_State *L, tr_lactor *la, const char *what)
{
    size_t n = strlen(what);
    if (strchr(what, '/') || (n > 4 && strcmp(what + n - 4, ".lua") == 0)) {
        const char *from = tr_lactor_script(la);
        const char *slash = strrchr(from, '/');
        if (what[0] != '/' && !file_exists(what) && slash) {
            lua_pushfstring(L, "%s/%s", lua_pushlstring(L, from, (size_t)(slash - from)),
                            what);
            lua_remove(L, -2);
            if (file_exists(lua_tostring(L, -1)))
                return 0;
            lua_pop(L, 1);
        }
        lua_pushstring(L, what);
        return 0;
    }
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "searchpath");
    lua_pushstring(L, what);
    lua_getfield(L, -3, "path");
    lua_call(L, 2, 2);
    if (lua_isnil(L, -2)) {
        const char *why = lua_pushfstring(L, "module '%s' not found:%s", what,
                                          lua_tostring(L, -1));
        (void)why;
        lua_replace(L, -4);
        lua_pop(L, 2);
        return -1;
    }
    lua_pop(L, 1);
    lua_remove(L, -2);
    return 0;
}

static lua_Integer opt_field_int(lua_State *L, int t, const char *k, lua_Integer d)
{
    lua_getfield(L, t, k);
    lua_Integer v = lua_isnil(L, -1) ? d : luaL_checkinteger(L, -1);
    lua_pop(L, 1);
    return v;
}

static int opt_field_bool(lua_State *L, int t, const char *k)
{
    lua_getfield(L, t, k);
    int v = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

/* Fills req's VM options from the opts table at t (may be 0), inheriting the
 * spawner's. */
static void vm_opts(lua_State *L, tr_lactor *la, int t, tr_lvm_opts *o)
{
    tr_lvm *vm = tr_lvm_of(L);
    memset(o, 0, sizeof(*o));
    o->mem_limit = vm->limit;
    o->budget_ms = vm->child_budget_ms;
    (void)la;
    if (t) {
        /* The sandbox is not inherited: an unsafe VM (troupe test, --unsafe) spawns
         * sandboxed actors unless it asks otherwise; a sandboxed one cannot ask. */
        if (opt_field_bool(L, t, "unsafe")) {
            if (!vm->unsafe)
                luaL_error(L, "troupe.actor.spawn: a sandboxed actor cannot spawn an "
                              "unsafe one");
            o->unsafe = true;
        }
        lua_getfield(L, t, "memory");
        if (!lua_isnil(L, -1)) {
            lua_Integer m = luaL_checkinteger(L, -1);
            if (m <= 0)
                luaL_error(L, "troupe.actor.spawn: memory must be a positive number of bytes");
            o->mem_limit = (size_t)m;
        }
        lua_pop(L, 1);
        lua_getfield(L, t, "budget");
        if (!lua_isnil(L, -1)) {
            lua_Number b = luaL_checknumber(L, -1);
            if (!(b > 0) || isinf(b) || b > 86400)
                luaL_error(L, "troupe.actor.spawn: budget must be a number of seconds "
                              "in (0, 86400]");
            uint64_t ms = (uint64_t)(b * 1000);
            o->budget_ms = ms ? ms : 1;   /* under a millisecond: the smallest budget */
        }
        lua_pop(L, 1);
    }
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "path");
    o->lua_path = lua_tostring(L, -1);   /* stays on the stack while it is used */
    lua_remove(L, -2);
}

static int l_spawn(lua_State *L)
{
    tr_lactor *la = self_actor(L);
    tr_ctx *ctx = tr_lactor_ctx(la);
    const char *what = luaL_checkstring(L, 1);
    int opts = lua_istable(L, 3) ? 3 : 0;
    if (!opts && !lua_isnoneornil(L, 3))
        luaL_typeerror(L, 3, "table or nil");
    if (resolve_script(L, la, what) < 0) {
        lua_pushnil(L);
        lua_insert(L, -2);
        return 2;   /* nil, "module 'x' not found: ..." */
    }
    int path_idx = lua_gettop(L);
    tr_lua_spawn *req = lua_newuserdatauv(L, sizeof(*req), 0);
    memset(req, 0, sizeof(*req));
    req->script = lua_tostring(L, path_idx);
    vm_opts(L, la, opts, &req->vm);
    tr_spawn_opts so = TR_SPAWN_OPTS_INIT;
    if (opts) {
        so.worker = (int)opt_field_int(L, opts, "worker", -1);
        so.max_mailbox = (uint32_t)opt_field_int(L, opts, "max_mailbox", 0);
        so.trap_exit = opt_field_bool(L, opts, "trap_exit");
        if (opt_field_bool(L, opts, "link"))
            so.link = tr_self(ctx);
    }
    tr_buf b = { 0 };
    if (!lua_isnoneornil(L, 2)) {
        encode_arg(L, 2, &b);
        req->args = b.data;
        req->args_len = b.len;
    }
    tr_pid pid;
    int rc = tr_lua_spawn_actor(tr_ctx_runtime(ctx), req, &so, &pid);
    tr_buf_free(&b);
    if (rc < 0) {
        if (rc == TR_EINVAL)
            return luaL_error(L, "troupe.actor.spawn: bad options (worker index?)");
        lua_pushnil(L);
        lua_pushstring(L, req->err);
        return 2;
    }
    tr_codec_pushpid(L, pid);
    return 1;
}

/* ---- supervisors from Lua ---- */

typedef struct lua_child {
    tr_lua_spawn req;
    char         *script;
    char         *lua_path;
    char         *args;
} lua_child;

static void lua_child_free(void *p)
{
    lua_child *c = p;
    if (c == NULL)
        return;
    tr_free(c->script);
    tr_free(c->lua_path);
    tr_free(c->args);
    tr_free(c);
}

static char *dup_bytes(const char *s, size_t n)
{
    char *d = tr_malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static int check_option(lua_State *L, int t, const char *k, const char *const names[],
                        int dflt)
{
    lua_getfield(L, t, k);
    int v = lua_isnil(L, -1) ? dflt : luaL_checkoption(L, -1, NULL, names);
    lua_pop(L, 1);
    return v;
}

/* actor.supervisor{ strategy=, intensity=, period=, children = { {id=, script=,
 * args=, restart=, shutdown=, trap_exit=}, ... } } -> pid | nil, err */
static int l_supervisor(lua_State *L)
{
    static const char *const strategies[] = { "one_for_one", "one_for_all",
                                              "rest_for_one", NULL };
    static const char *const restarts[] = { "permanent", "transient", "temporary", NULL };
    tr_lactor *la = self_actor(L);
    tr_ctx *ctx = tr_lactor_ctx(la);
    luaL_checktype(L, 1, LUA_TTABLE);
    tr_sup_spec spec;
    memset(&spec, 0, sizeof spec);
    spec.strategy = (tr_sup_strategy)check_option(L, 1, "strategy", strategies, 0);
    spec.intensity = (int)opt_field_int(L, 1, "intensity", 3);
    lua_getfield(L, 1, "period");
    spec.period_ms = lua_isnil(L, -1) ? 5000 : (int)(luaL_checknumber(L, -1) * 1000);
    lua_pop(L, 1);
    spec.arg_free = lua_child_free;
    if (lua_getfield(L, 1, "children") != LUA_TTABLE)
        return luaL_error(L, "troupe.actor.supervisor: children must be a table");
    int ch = lua_gettop(L);
    int n = (int)luaL_len(L, ch);
    tr_child_spec *specs = lua_newuserdatauv(L, sizeof(tr_child_spec) * (size_t)(n ? n : 1), 0);
    memset(specs, 0, sizeof(tr_child_spec) * (size_t)(n ? n : 1));
    /* First pass: everything that can raise (bad options, values that cannot travel,
     * scripts not found), before anything is allocated that a raise would leak. */
    for (int i = 0; i < n; i++) {
        lua_rawgeti(L, ch, i + 1);
        int c = lua_gettop(L);
        luaL_checktype(L, c, LUA_TTABLE);
        lua_getfield(L, c, "id");
        lua_getfield(L, c, "script");
        if (!lua_isstring(L, -2) || !lua_isstring(L, -1))
            return luaL_error(L, "troupe.actor.supervisor: child %d needs id and script", i + 1);
        if (resolve_script(L, la, lua_tostring(L, -1)) < 0)
            return luaL_error(L, "troupe.actor.supervisor: %s", lua_tostring(L, -1));
        tr_lvm_opts vo;
        vm_opts(L, la, c, &vo);
        check_option(L, c, "restart", restarts, 0);
        lua_getfield(L, c, "shutdown");
        if (!lua_isnil(L, -1))
            luaL_checknumber(L, -1);
        lua_getfield(L, c, "args");
        if (!lua_isnil(L, -1)) {
            tr_buf b = { 0 };
            encode_arg(L, lua_gettop(L), &b);
            tr_buf_free(&b);
        }
        lua_settop(L, ch);
    }
    luaL_checkstack(L, n + 8, "too many children");
    /* Second pass: build the specs; only an allocation can fail now. */
    int made = 0, rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        lua_rawgeti(L, ch, i + 1);
        int c = lua_gettop(L);
        lua_getfield(L, c, "id");
        specs[i].id = lua_tostring(L, -1);     /* the child table keeps it alive */
        lua_getfield(L, c, "script");
        resolve_script(L, la, lua_tostring(L, -1));
        lua_child *lc = tr_malloc(sizeof(*lc));
        if (lc == NULL) {
            rc = TR_ENOMEM;
            break;
        }
        memset(lc, 0, sizeof(*lc));
        made++;
        specs[i].arg = lc;
        size_t len;
        const char *path = lua_tolstring(L, -1, &len);
        lc->script = dup_bytes(path, len);
        vm_opts(L, la, c, &lc->req.vm);
        lc->lua_path = dup_bytes(lc->req.vm.lua_path, strlen(lc->req.vm.lua_path));
        lua_getfield(L, c, "args");
        if (!lua_isnil(L, -1)) {
            tr_buf b = { 0 };
            if (tr_codec_encode(L, lua_gettop(L), &b, &(const char *){ NULL }) < 0)
                rc = TR_ENOMEM;
            lc->args = rc == 0 ? dup_bytes(b.data, b.len) : NULL;
            lc->req.args_len = b.len;
            tr_buf_free(&b);
            if (lc->args == NULL)
                rc = TR_ENOMEM;
        }
        if (lc->script == NULL || lc->lua_path == NULL)
            rc = TR_ENOMEM;
        lc->req.script = lc->script;
        lc->req.vm.lua_path = lc->lua_path;
        lc->req.args = lc->args;
        specs[i].behaviour = &tr_lua_behaviour;
        specs[i].opts = (tr_spawn_opts)TR_SPAWN_OPTS_INIT;
        specs[i].opts.trap_exit = opt_field_bool(L, c, "trap_exit");
        specs[i].restart = (tr_restart)check_option(L, c, "restart", restarts, 0);
        lua_getfield(L, c, "shutdown");
        specs[i].shutdown_ms = lua_isnil(L, -1) ? 5000 : (int)(lua_tonumber(L, -1) * 1000);
        lua_settop(L, c);   /* the child table (and so its id) stays on the stack */
    }
    if (rc < 0) {
        for (int i = 0; i < made; i++)
            lua_child_free(specs[i].arg);
        return fail(L, rc);
    }
    spec.children = specs;
    spec.n_children = n;
    tr_spawn_opts so = TR_SPAWN_OPTS_INIT;
    if (opt_field_bool(L, 1, "link"))
        so.link = tr_self(ctx);
    tr_pid pid;
    rc = tr_supervisor_start(tr_ctx_runtime(ctx), &spec, &so, &pid);
    if (rc < 0)
        return fail(L, rc);
    tr_codec_pushpid(L, pid);
    return 1;
}

static const luaL_Reg actor_funcs[] = {
    { "spawn", l_spawn },         { "send", l_send },       { "call", l_call },
    { "self", l_self },           { "exit", l_exit },       { "kill", l_kill },
    { "link", l_link },           { "unlink", l_unlink },   { "monitor", l_monitor },
    { "demonitor", l_demonitor }, { "trap_exit", l_trap_exit },
    { "after", l_after },         { "every", l_every },     { "cancel", l_cancel },
    { "register", l_register },   { "unregister", l_unregister },
    { "whereis", l_whereis },     { "alive", l_alive },     { "sleep", l_sleep },
    { "now", l_now },             { "supervisor", l_supervisor },
    { "reload", l_reload },
    { NULL, NULL }
};

int luaopen_troupe_actor(lua_State *L)
{
    luaL_newlib(L, actor_funcs);
    return 1;
}

/* ---- pids print as <index.generation> ---- */

static int pid_tostring(lua_State *L)
{
    tr_pid pid = tr_codec_topid(L, 1);
    if (pid == 0) {                 /* the light userdata NULL is json.null / pg.null */
        lua_pushliteral(L, "null");
        return 1;
    }
    lua_pushfstring(L, "<pid %d.%d>", (int)(uint32_t)pid, (int)(pid >> 32));
    return 1;
}

void tr_lua_preload(lua_State *L)
{
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L, luaopen_troupe_actor);
    lua_setfield(L, -2, "troupe.actor");
    lua_pushcfunction(L, luaopen_troupe_json);
    lua_setfield(L, -2, "troupe.json");
    lua_pushcfunction(L, luaopen_troupe_html);
    lua_setfield(L, -2, "troupe.html");
    lua_pushcfunction(L, luaopen_troupe_http);
    lua_setfield(L, -2, "troupe.http");
    lua_pushcfunction(L, luaopen_troupe_redis);
    lua_setfield(L, -2, "troupe.redis");
    lua_pushcfunction(L, luaopen_troupe_pg);
    lua_setfield(L, -2, "troupe.pg");
    lua_pop(L, 1);
    lua_pushlightuserdata(L, NULL);
    lua_createtable(L, 0, 2);
    lua_pushcfunction(L, pid_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushliteral(L, "pid");
    lua_setfield(L, -2, "__name");
    lua_setmetatable(L, -2);
    lua_pop(L, 1);
}
