/*
 * bindings/redis.c — the troupe.redis Lua module, over runtime/store/redis.h.
 *
 *   local redis = require "troupe.redis"
 *   redis.call("SET", "k", "v")            --> "OK"
 *   redis.call({ timeout = 0.1 }, "GET", "k")
 *   redis.pipeline({ { "INCR", "n" }, { "GET", "n" } })   --> { 1, "1" }
 *   redis.multi({ ... })                   --> EXEC's replies
 *   redis.subscribe("news", pid_or_function); redis.unsubscribe("news")
 *   redis.psubscribe("news.*", function(message, channel, pattern) ... end)
 *   redis.publish("news", "hello")         --> receivers
 *   redis.configure{ url = "redis://...", timeout = 2 }; redis.connected()
 *
 * Replies, as ioredis gives them: an integer is a Lua integer, a bulk string a string
 * (binary-safe), a status its text ("OK"), an array a table. A nil reply is nil at the
 * top and false inside an array (as Redis's own Lua does); an error reply is nil, "ERR
 * ..." at the top and { err = "ERR ..." } inside an array or a pipeline's results.
 * Misuse raises; a failure returns nil, err ("redis: not connected (...); retrying",
 * "redis: timed out after 100 ms", ...), except inside an HTTP handler, where Redis
 * being unavailable raises troupe.errors.new(503, ...).
 *
 * The C functions wait (yield) and return an extra `true` when Redis is unavailable;
 * the small Lua layer at the bottom turns that into the 503 inside a handler.
 */
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>

#include "http.h"
#include "lactor.h"
#include "redis.h"

_Static_assert(offsetof(tr_redis_result, head) == 0 &&
               sizeof(tr_lactor_result) <= sizeof(((tr_redis_result *)0)->head),
               "a tr_lactor_result must fit at the start of a tr_redis_result");
_Static_assert(TR_REDIS_MSG_TAG == TR_LUA_TAG_VALUE, "pub/sub messages are Lua values");

/* Registry keys: the VM's function subscriptions {channel = fn}, its listener's ref
 * (an integer) and whether the listener runs. */
static char subs_key, psubs_key, listener_ref_key, listener_on_key;

/* Raises a misuse error at the caller's line: the user's, behind the Lua layer. */
static int misuse(lua_State *L, const char *fmt, ...)
{
    lua_Debug ar;
    int level = 1;
    if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "S", &ar) &&
        strcmp(ar.source, "=troupe.redis") == 0)
        level = 2;
    va_list ap;
    va_start(ap, fmt);
    luaL_where(L, level);
    lua_pushvfstring(L, fmt, ap);
    va_end(ap);
    lua_concat(L, 2);
    return lua_error(L);
}

static tr_lactor *self_actor(lua_State *L)
{
    tr_lactor *la = tr_lactor_of(L);
    if (la == NULL || tr_lactor_ctx(la) == NULL)
        misuse(L, "troupe.redis: not inside an actor");
    return la;
}

static tr_runtime *runtime_of(tr_lactor *la)
{
    return tr_ctx_runtime(tr_lactor_ctx(la));
}

static void check_can_wait(lua_State *L, const char *what)
{
    if (!lua_isyieldable(L))
        misuse(L, "troupe.redis: %s cannot wait here (only in a handler or the main "
                      "script, not in init or terminate)", what);
}

/* Seconds in opts.timeout -> milliseconds (0: the default). */
static int opt_timeout(lua_State *L, int idx)
{
    if (idx == 0 || lua_isnoneornil(L, idx))
        return 0;
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_getfield(L, idx, "timeout");
    int ms = 0;
    if (!lua_isnil(L, -1)) {
        lua_Number s = luaL_checknumber(L, -1);
        if (!(s > 0) || s > 86400)
            misuse(L, "troupe.redis: timeout must be a number of seconds in (0, 86400]");
        ms = (int)ceil(s * 1000);
    }
    lua_pop(L, 1);
    return ms;
}

/* ---- pushing replies ---- */

/* Pushes the item at *pos (and its elements) in the nested form: nil -> false,
 * error -> {err = text}. */
static void push_nested(lua_State *L, const tr_redis_result *res, size_t *pos)
{
    tr_redis_item it;
    if (tr_redis_read(res->data, res->len, pos, &it) < 0) {
        lua_pushboolean(L, 0);
        return;
    }
    switch (it.type) {
    case TR_REDIS_INT:    lua_pushinteger(L, (lua_Integer)it.integer); break;
    case TR_REDIS_STR:
    case TR_REDIS_STATUS: lua_pushlstring(L, it.str, it.len); break;
    case TR_REDIS_ERR:
        lua_createtable(L, 0, 1);
        lua_pushlstring(L, it.str, it.len);
        lua_setfield(L, -2, "err");
        break;
    case TR_REDIS_ARRAY:
        luaL_checkstack(L, 4, "redis reply too deep");
        lua_createtable(L, it.len > INT32_MAX ? INT32_MAX : (int)it.len, 0);
        for (size_t i = 0; i < it.len; i++) {
            push_nested(L, res, pos);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        break;
    default:
        lua_pushboolean(L, 0);
        break;
    }
}

/* A failed request: nil, err, and true when Redis is unavailable (not out of memory). */
static int push_failure(lua_State *L, int status, const char *err)
{
    lua_pushnil(L);
    lua_pushstring(L, err ? err : "redis: failed");
    if (status == TR_ENOMEM)
        return 2;
    lua_pushboolean(L, 1);
    return 3;
}

/* One reply at the top: nil, an error as nil + text, else the value. */
static int push_top(lua_State *L, const tr_redis_result *res)
{
    size_t pos = 0;
    tr_redis_item it;
    size_t at = pos;
    if (tr_redis_read(res->data, res->len, &at, &it) < 0 || it.type == TR_REDIS_NIL) {
        lua_pushnil(L);
        return 1;
    }
    if (it.type == TR_REDIS_ERR) {
        lua_pushnil(L);
        lua_pushlstring(L, it.str, it.len);
        return 2;
    }
    push_nested(L, res, &pos);
    return 1;
}

static int push_call(lua_State *L, tr_lactor_result *lr)
{
    tr_redis_result *res = (tr_redis_result *)lr;
    if (res->status < 0)
        return push_failure(L, res->status, res->err);
    return push_top(L, res);
}

static int push_pipeline(lua_State *L, tr_lactor_result *lr)
{
    tr_redis_result *res = (tr_redis_result *)lr;
    if (res->status < 0)
        return push_failure(L, res->status, res->err);
    size_t pos = 0;
    lua_createtable(L, (int)res->count, 0);
    for (uint32_t i = 0; i < res->count; i++) {
        push_nested(L, res, &pos);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

static int push_multi(lua_State *L, tr_lactor_result *lr)
{
    tr_redis_result *res = (tr_redis_result *)lr;
    if (res->status < 0)
        return push_failure(L, res->status, res->err);
    size_t at = 0;
    tr_redis_item it;
    if (tr_redis_read(res->data, res->len, &at, &it) < 0 || it.type == TR_REDIS_NIL) {
        lua_pushnil(L);
        lua_pushliteral(L, "redis: transaction aborted");
        return 2;
    }
    return push_top(L, res);
}

static void free_result(tr_lactor_result *lr)
{
    tr_redis_result_free((tr_redis_result *)lr);
}

/* Hands res to the coroutine user = {pid, ref} waits in, to be pushed by push. */
static int complete(tr_runtime *rt, tr_redis_result *res,
                    int (*push)(lua_State *, tr_lactor_result *))
{
    tr_lactor_result *lr = (tr_lactor_result *)(void *)res->head;
    tr_pid pid = res->user[0];
    lr->ref = res->user[1];
    lr->push = push;
    lr->free = free_result;
    return tr_lactor_complete(rt, pid, lr);
}

static void done_call(tr_runtime *rt, tr_redis_result *res) { complete(rt, res, push_call); }
static void done_pipeline(tr_runtime *rt, tr_redis_result *res) { complete(rt, res, push_pipeline); }
static void done_multi(tr_runtime *rt, tr_redis_result *res) { complete(rt, res, push_multi); }

/* ---- commands ---- */

/* Checks that the value at idx can be an argument (a string or a number, which
 * becomes its decimal text) and returns its bytes; it stays at idx. */
static const char *check_arg(lua_State *L, int idx, size_t *len, const char *where)
{
    int t = lua_type(L, idx);
    if (t != LUA_TSTRING && t != LUA_TNUMBER)
        misuse(L, "troupe.redis: %s: arguments must be strings or numbers, not %s", where,
                   luaL_typename(L, idx));
    return lua_tolstring(L, idx, len);
}

/* Submits and waits; returns what the coroutine resumes with, or the failure. */
static int submit_and_wait(lua_State *L, tr_lactor *la, tr_redis_req *req)
{
    char err[320];
    uint64_t ref = tr_lactor_new_ref();
    req->user[0] = tr_self(tr_lactor_ctx(la));
    req->user[1] = ref;
    int rc = tr_redis_submit(runtime_of(la), req, err, sizeof err);
    if (rc == TR_EINVAL)
        return misuse(L, "troupe.%s", err);
    if (rc < 0)
        return push_failure(L, rc, err);
    return tr_lactor_wait(L, ref);
}

/* call([opts,] cmd, args...) */
static int c_call(lua_State *L)
{
    tr_lactor *la = self_actor(L);
    int base = lua_istable(L, 1) ? 2 : 1;
    int timeout_ms = opt_timeout(L, base == 2 ? 1 : 0);
    int argc = lua_gettop(L) - base + 1;
    if (argc < 1 || lua_type(L, base) != LUA_TSTRING)
        return misuse(L, "troupe.redis: call needs a command name (a string)");
    check_can_wait(L, "redis.call");
    const char *small_v[16];
    size_t small_l[16];
    const char **argv = small_v;
    size_t *lens = small_l;
    if (argc > 16) {
        argv = lua_newuserdatauv(L, sizeof *argv * (size_t)argc, 0);
        lens = lua_newuserdatauv(L, sizeof *lens * (size_t)argc, 0);
    }
    for (int i = 0; i < argc; i++)
        argv[i] = check_arg(L, base + i, &lens[i], "redis.call");
    tr_redis_req req = { .ncmds = 1, .argc = &argc, .argv = argv, .argvlen = lens,
                         .timeout_ms = timeout_ms, .done = done_call };
    return submit_and_wait(L, la, &req);
}

/* exec(cmds, opts, multi): redis.pipeline and redis.multi */
static int c_exec(lua_State *L)
{
    tr_lactor *la = self_actor(L);
    int multi = lua_toboolean(L, 3);
    const char *what = multi ? "redis.multi" : "redis.pipeline";
    luaL_checktype(L, 1, LUA_TTABLE);
    int timeout_ms = opt_timeout(L, lua_isnoneornil(L, 2) ? 0 : 2);
    lua_settop(L, 1);
    lua_Integer n = (lua_Integer)lua_rawlen(L, 1);
    if (n < 1 || n > 1000000)
        return misuse(L, "troupe.redis: %s needs a list of 1 to 1000000 commands", what);
    /* First pass: shapes and sizes; nothing is pushed but the command being looked at. */
    size_t total = 0;
    for (lua_Integer i = 1; i <= n; i++) {
        if (lua_rawgeti(L, 1, i) != LUA_TTABLE)
            return misuse(L, "troupe.redis: %s: command %d must be a table like "
                                 "{\"SET\", \"k\", \"v\"}", what, (int)i);
        size_t k = lua_rawlen(L, -1);
        if (k < 1 || lua_rawgeti(L, -1, 1) != LUA_TSTRING)
            return misuse(L, "troupe.redis: %s: command %d has no name", what, (int)i);
        lua_pop(L, 2);
        total += k;
    }
    check_can_wait(L, what);
    /* Every argument stays on the stack until the commands are written out. */
    if (total > 1000000)
        return misuse(L, "troupe.redis: %s: too many arguments", what);
    luaL_checkstack(L, (int)total + 8, "too many redis arguments");
    int *argc = lua_newuserdatauv(L, sizeof *argc * (size_t)n, 0);
    const char **argv = lua_newuserdatauv(L, sizeof *argv * total, 0);
    size_t *lens = lua_newuserdatauv(L, sizeof *lens * total, 0);
    size_t j = 0;
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, 1, i);
        int cmd = lua_gettop(L);
        int k = (int)lua_rawlen(L, cmd);
        argc[i - 1] = k;
        for (int a = 1; a <= k; a++) {
            lua_rawgeti(L, cmd, a);
            argv[j] = check_arg(L, -1, &lens[j], what);
            j++;
        }
        lua_remove(L, cmd);
    }
    tr_redis_req req = { .ncmds = (int)n, .argc = argc, .argv = argv, .argvlen = lens,
                         .multi = multi, .timeout_ms = timeout_ms,
                         .done = multi ? done_multi : done_pipeline };
    return submit_and_wait(L, la, &req);
}

/* ---- pub/sub ---- */

static void log_failure(lua_State *co, int ok, int idx)
{
    if (!ok)
        fprintf(stderr, "troupe: redis subscriber function failed: %s\n",
                lua_isstring(co, idx) ? lua_tostring(co, idx) : "(error object)");
}

static void msg_done(tr_lactor_job *job, lua_State *co, int ok, int idx, int n)
{
    (void)job;
    (void)n;
    log_failure(co, ok, idx);
}

static void listener_done(tr_lactor_job *job, lua_State *co, int ok, int idx, int n)
{
    (void)job;
    (void)n;
    log_failure(co, ok, idx);
    lua_pushboolean(co, 0);
    lua_rawsetp(co, LUA_REGISTRYINDEX, &listener_on_key);
}

static tr_lactor_job msg_job = { msg_done };
static tr_lactor_job listener_job = { listener_done };

/* The VM's listener ref (allocated once). */
static uint64_t listener_ref(lua_State *L)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &listener_ref_key);
    uint64_t ref = (uint64_t)lua_tointeger(L, -1);
    lua_pop(L, 1);
    if (ref == 0) {
        ref = tr_lactor_new_ref();
        lua_pushinteger(L, (lua_Integer)ref);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &listener_ref_key);
    }
    return ref;
}

static int l_listener_wait(lua_State *L)
{
    return tr_lactor_wait(L, (uint64_t)lua_tointeger(L, lua_upvalueindex(1)));
}

/* Starts the listener coroutine of the VM whose main state is L, unless it runs: a
 * job that waits for ref forever; each function-subscription message resumes it
 * once (push_message starts the function as a job of its own first). */
static void start_listener(lua_State *L, tr_lactor *la)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &listener_on_key);
    int on = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (on)
        return;
    static const char loop[] = "local wait = ... while wait() do end";
    if (luaL_loadbuffer(L, loop, sizeof loop - 1, "=troupe.redis listener") != LUA_OK)
        lua_error(L);
    lua_pushinteger(L, (lua_Integer)listener_ref(L));
    lua_pushcclosure(L, l_listener_wait, 1);
    if (tr_lactor_run(la, 1, &listener_job) == 0) {
        lua_pushboolean(L, 1);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &listener_on_key);
    }
}

/* A function subscription's message: runs subs[channel](message, channel), or for a
 * pattern psubs[pattern](message, channel, pattern), as a job; resumes the listener
 * with true. */
static int push_message(lua_State *L, tr_lactor_result *lr)
{
    tr_redis_result *res = (tr_redis_result *)lr;
    tr_lactor *la = tr_lactor_of(L);
    size_t pos = 0;
    tr_redis_item ch, msg, pat;
    int pattern = res->count == 3;
    if (la && tr_redis_read(res->data, res->len, &pos, &ch) == 0 &&
        tr_redis_read(res->data, res->len, &pos, &msg) == 0 &&
        (!pattern || tr_redis_read(res->data, res->len, &pos, &pat) == 0)) {
        lua_rawgetp(L, LUA_REGISTRYINDEX, pattern ? &psubs_key : &subs_key);
        if (lua_istable(L, -1)) {
            if (pattern)
                lua_pushlstring(L, pat.str, pat.len);
            else
                lua_pushlstring(L, ch.str, ch.len);
            lua_rawget(L, -2);
            if (lua_isfunction(L, -1)) {
                lua_pushlstring(L, msg.str, msg.len);
                lua_pushlstring(L, ch.str, ch.len);
                if (pattern)
                    lua_pushlstring(L, pat.str, pat.len);
                tr_lactor_run(la, pattern ? 3 : 2, &msg_job);   /* pops fn and its arguments */
            } else {
                lua_pop(L, 1);
            }
        }
        lua_pop(L, 1);
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int hook_message(tr_runtime *rt, tr_redis_result *res)
{
    return complete(rt, res, push_message);
}

static int push_confirm(lua_State *L, tr_lactor_result *lr)
{
    tr_redis_result *res = (tr_redis_result *)lr;
    if (res->status < 0)
        return push_failure(L, res->status, res->err);
    lua_pushboolean(L, 1);
    return 1;
}

/* The confirmation of a function subscription also makes sure the listener runs
 * (now: outside any coroutine, where a job may be started). */
static int push_confirm_fn(lua_State *L, tr_lactor_result *lr)
{
    tr_lactor *la = tr_lactor_of(L);
    if (la)
        start_listener(L, la);
    return push_confirm(L, lr);
}

static void done_confirm(tr_runtime *rt, tr_redis_result *res) { complete(rt, res, push_confirm); }
static void done_confirm_fn(tr_runtime *rt, tr_redis_result *res)
{
    complete(rt, res, push_confirm_fn);
}

/* subscribe(channel, pid | function) -> true | nil, err, unavailable; psubscribe(pattern,
 * pid | function) the same for a pattern. */
static int do_subscribe(lua_State *L, int pattern)
{
    const char *what = pattern ? "psubscribe" : "subscribe";
    void *key = pattern ? &psubs_key : &subs_key;
    tr_lactor *la = self_actor(L);
    size_t len;
    const char *channel = luaL_checklstring(L, 1, &len);
    tr_pid self = tr_self(tr_lactor_ctx(la));
    tr_redis_target target = { 0, 0, NULL };
    int fn = lua_isfunction(L, 2);
    /* On the VM's main thread (init: an actor's or an app's top level) nothing runs a
     * coroutine, so the listener can start at once; in a coroutine it starts when the
     * confirmation resumes it (starting it from inside would disturb the caller). */
    int main_thread = lua_pushthread(L);
    lua_pop(L, 1);
    if (fn) {
        if (!main_thread)
            check_can_wait(L, pattern ? "redis.psubscribe with a function"
                                   : "redis.subscribe with a function");
        target.pid = self;
        target.ref = listener_ref(L);
        target.hook = hook_message;
        if (lua_rawgetp(L, LUA_REGISTRYINDEX, key) != LUA_TTABLE) {
            lua_pop(L, 1);
            lua_newtable(L);
            lua_pushvalue(L, -1);
            lua_rawsetp(L, LUA_REGISTRYINDEX, key);
        }
        lua_pushvalue(L, 1);
        lua_pushvalue(L, 2);
        lua_rawset(L, -3);                 /* subs[channel] = fn */
        lua_pop(L, 1);
    } else {
        target.pid = tr_codec_topid(L, 2);
        if (target.pid == TR_PID_NONE)
            return misuse(L, "troupe.redis: %s: the target must be a pid or a function, not %s",
                          what, luaL_typename(L, 2));
    }
    int wait = lua_isyieldable(L) && !main_thread;
    uint64_t ref = tr_lactor_new_ref();
    tr_redis_req confirm = { .done = fn ? done_confirm_fn : done_confirm,
                             .user = { self, ref } };
    int rc = (pattern ? tr_redis_psubscribe : tr_redis_subscribe)(runtime_of(la), channel, len,
                                                                 &target, wait ? &confirm : NULL);
    if (rc < 0) {
        if (fn) {                          /* not recorded: forget the function */
            lua_rawgetp(L, LUA_REGISTRYINDEX, key);
            lua_pushvalue(L, 1);
            lua_pushnil(L);
            lua_rawset(L, -3);
            lua_pop(L, 1);
        }
        return push_failure(L, rc, rc == TR_ENOMEM ? "redis: out of memory"
                                                   : "redis: the runtime is stopping");
    }
    if (!wait) {
        if (fn)
            start_listener(L, la);
        lua_pushboolean(L, 1);
        return 1;
    }
    return tr_lactor_wait(L, ref);
}

/* unsubscribe(channel [, pid]) -> true: drops pid's subscriptions to channel; without
 * a pid, the caller's own (its function, and messages to itself). punsubscribe(pattern
 * [, pid]) the same for a pattern. */
static int do_unsubscribe(lua_State *L, int pattern)
{
    void *key = pattern ? &psubs_key : &subs_key;
    tr_lactor *la = self_actor(L);
    size_t len;
    const char *channel = luaL_checklstring(L, 1, &len);
    tr_pid pid = tr_self(tr_lactor_ctx(la));
    if (!lua_isnoneornil(L, 2)) {
        pid = tr_codec_topid(L, 2);
        if (pid == TR_PID_NONE)
            return misuse(L, "troupe.redis: %s: the second argument must be a pid or nil, not %s",
                          pattern ? "punsubscribe" : "unsubscribe", luaL_typename(L, 2));
    } else if (lua_rawgetp(L, LUA_REGISTRYINDEX, key) == LUA_TTABLE) {
        lua_pushvalue(L, 1);
        lua_pushnil(L);
        lua_rawset(L, -3);
    }
    /* In a coroutine it returns once the subscriber table has dropped pid, so that no
     * message published after it returns reaches pid; elsewhere it cannot wait. */
    int main_thread = lua_pushthread(L);
    lua_pop(L, 1);
    int wait = lua_isyieldable(L) && !main_thread;
    uint64_t ref = tr_lactor_new_ref();
    tr_redis_req confirm = { .done = done_confirm, .user = { tr_self(tr_lactor_ctx(la)), ref } };
    int rc = (pattern ? tr_redis_punsubscribe : tr_redis_unsubscribe)(runtime_of(la), channel, len,
                                                                     pid, wait ? &confirm : NULL);
    if (rc < 0) {
        lua_pushnil(L);
        lua_pushstring(L, rc == TR_ENOMEM ? "redis: out of memory" : "redis: the runtime is stopping");
        return 2;
    }
    if (!wait) {
        lua_pushboolean(L, 1);
        return 1;
    }
    return tr_lactor_wait(L, ref);
}

static int c_subscribe(lua_State *L)    { return do_subscribe(L, 0); }
static int c_psubscribe(lua_State *L)   { return do_subscribe(L, 1); }
static int c_unsubscribe(lua_State *L)  { return do_unsubscribe(L, 0); }
static int c_punsubscribe(lua_State *L) { return do_unsubscribe(L, 1); }

/* ---- the rest ---- */

/* configure{url =, timeout = seconds} -> true */
static int c_configure(lua_State *L)
{
    tr_lactor *la = self_actor(L);
    luaL_checktype(L, 1, LUA_TTABLE);
    int ms = opt_timeout(L, 1);
    lua_getfield(L, 1, "url");
    const char *url = lua_isnil(L, -1) ? NULL : luaL_checkstring(L, -1);
    char err[256];
    int rc = tr_redis_configure(runtime_of(la), url, ms, err, sizeof err);
    if (rc == TR_EINVAL)
        return misuse(L, "troupe.%s", err);
    if (rc < 0)
        return misuse(L, "troupe.redis: out of memory");
    lua_pushboolean(L, 1);
    return 1;
}

/* connected() -> true | false, why (for health checks; opens the connection) */
static int c_connected(lua_State *L)
{
    tr_lactor *la = self_actor(L);
    char err[256];
    if (tr_redis_connected(runtime_of(la), err, sizeof err)) {
        lua_pushboolean(L, 1);
        return 1;
    }
    lua_pushboolean(L, 0);
    lua_pushstring(L, err);
    return 2;
}

static int c_in_http(lua_State *L)
{
    lua_pushboolean(L, tr_http_worker_of(L) != NULL);
    return 1;
}

/* The public functions: the unavailable flag becomes a 503 inside a handler. */
static const char wrapper[] =
    "local c = ...\n"
    "local redis = {}\n"
    "local function finish(v, err, unavailable)\n"
    "  if err == nil then return v end\n"
    "  if unavailable and c.in_http() then\n"
    "    error(require('troupe.errors').new(503, 'Service Unavailable: redis unavailable'), 0)\n"
    "  end\n"
    "  return v, err\n"
    "end\n"
    "function redis.call(...) return finish(c.call(...)) end\n"
    "function redis.pipeline(cmds, opts) return finish(c.exec(cmds, opts, false)) end\n"
    "function redis.multi(cmds, opts) return finish(c.exec(cmds, opts, true)) end\n"
    "function redis.publish(channel, message)\n"
    "  return finish(c.call('PUBLISH', channel, message))\n"
    "end\n"
    "function redis.subscribe(channel, target) return finish(c.subscribe(channel, target)) end\n"
    "function redis.psubscribe(pattern, target) return finish(c.psubscribe(pattern, target)) end\n"
    "redis.unsubscribe = c.unsubscribe\n"
    "redis.punsubscribe = c.punsubscribe\n"
    "redis.configure = c.configure\n"
    "redis.connected = c.connected\n"
    "return redis\n";

int luaopen_troupe_redis(lua_State *L);   /* registered by bindings/actor.c */
int luaopen_troupe_redis(lua_State *L)
{
    static const luaL_Reg fns[] = {
        { "call", c_call },           { "exec", c_exec },
        { "subscribe", c_subscribe }, { "unsubscribe", c_unsubscribe },
        { "psubscribe", c_psubscribe }, { "punsubscribe", c_punsubscribe },
        { "configure", c_configure }, { "connected", c_connected },
        { "in_http", c_in_http },     { NULL, NULL }
    };
    if (luaL_loadbuffer(L, wrapper, sizeof wrapper - 1, "=troupe.redis") != LUA_OK)
        return lua_error(L);
    luaL_newlib(L, fns);
    lua_call(L, 1, 1);
    return 1;
}
