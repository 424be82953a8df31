/* test_lua.c — the Lua host from C, so that ASan and TSan watch it: Lua actors
 * spawned from a main script exchange sends and calls across both workers, wait,
 * fail, hit their memory cap and CPU budget, and every allocation made through the
 * Lua allocator is returned when the runtime is freed. The runtime's cache of
 * compiled actor scripts (chunks.c) is checked through its counters: used by later
 * spawns, refreshed when a file changes, bounded, never used by scripts' own
 * loadfile/dofile/require, freed with the runtime. */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "chunks.h"
#include "lactor.h"
#include "vm.h"

#include <lauxlib.h>

static char dir[64];

static void write_file(const char *name, const char *text)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/troupe-test-lua.XXXXXX");
    assert_non_null(mkdtemp(dir));
    write_file("echo.lua",
               "local actor = require 'troupe.actor'\n"
               "return {\n"
               "  init = function(args) return { n = 0, args = args } end,\n"
               "  handle = function(s, msg, from)\n"
               "    s.n = s.n + 1\n"
               "    if msg == 'count' then return s.n end\n"
               "    if msg == 'args' then return s.args end\n"
               "    if msg == 'sleep' then actor.sleep(0.02) return 'woke' end\n"
               "    if msg == 'fail' then error('failed on purpose') end\n"
               "    if msg == 'spin' then while true do pcall(function() while true do end end) end end\n"
               "    if msg == 'hog' then local t = {} for i = 1, 1e7 do t[i] = {i} end end\n"
               "    if type(msg) == 'table' and msg.ping then\n"
               "      return actor.call(msg.ping, msg.value)\n"
               "    end\n"
               "    return msg\n"
               "  end,\n"
               "}\n");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Writes name with an mtime long past (a file modified within the last second is not
 * cached: chunks.c). */
static void write_old_file(const char *name, const char *text, time_t mtime)
{
    write_file(name, text);
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    struct timespec times[2] = { { 0, UTIME_OMIT }, { mtime, 0 } };
    assert_int_equal(utimensat(AT_FDCWD, path, times, 0), 0);
}

/* Runs code as the main actor of a fresh runtime (unsafe: with io and os.execute),
 * which stops the runtime with a deadline of stop_ms when it ends; returns whether it
 * succeeded. *chunks (if not NULL) gets the counters of the runtime's chunk cache as
 * the runtime ends. */
static int run_main_stop(const char *code, int workers, bool unsafe, int stop_ms,
                         tr_chunks_stats *chunks)
{
    tr_runtime *rt = th_runtime(workers);
    char path[256];
    snprintf(path, sizeof path, "%s/?.lua", dir);
    tr_lua_spawn req;
    memset(&req, 0, sizeof req);
    req.script = "=test";
    req.code = code;
    req.main = 1;
    req.vm.lua_path = path;
    req.vm.budget_ms = UINT64_MAX;
    req.vm.child_budget_ms = 1000;
    req.vm.unsafe = unsafe;
    tr_lua_main_result result = { .stop_deadline_ms = stop_ms };
    tr_lua_main_watch(&result);
    tr_pid pid;
    int rc = tr_lua_spawn_actor(rt, &req, NULL, &pid);
    if (rc < 0)
        fail_msg("spawn: %s", req.err);
    assert_int_equal(tr_send(rt, pid, TR_LUA_TAG_START, NULL, 0), 0);
    assert_int_equal(tr_runtime_wait(rt), 0);   /* the main actor stops the runtime */
    if (chunks)
        tr_chunks_stats_get(rt, chunks);
    tr_runtime_free(rt);
    tr_lua_main_watch(NULL);
    assert_int_equal(tr_alloc_live(), 0);   /* the chunk cache included */
    tr_alloc_track(0);
    return result.done && result.ok;
}

static int run_main_ex(const char *code, int workers, bool unsafe, tr_chunks_stats *chunks)
{
    return run_main_stop(code, workers, unsafe, 5000, chunks);
}

static int run_main(const char *code, int workers)
{
    return run_main_ex(code, workers, false, NULL);
}

static void test_messages_and_calls(void **state)
{
    (void)state;
    assert_true(run_main(
        "local actor = require 'troupe.actor'\n"
        "package.path = package.path\n"
        "local e = assert(actor.spawn('echo', { x = 1, list = { 1, 2.5, 'three' } }))\n"
        "for i = 1, 100 do assert(actor.send(e, i)) end\n"
        "assert(actor.call(e, 'count') == 101)\n"
        "local a = actor.call(e, 'args')\n"
        "assert(a.x == 1 and a.list[2] == 2.5 and math.type(a.list[1]) == 'integer')\n"
        "assert(actor.call(e, 'sleep') == 'woke')\n"
        "local v, err = actor.call(e, 'fail')\n"
        "assert(v == nil and err:find('failed on purpose'), err)\n"
        "assert(actor.call(e, 'count') == 105)\n"
        "local f = assert(actor.spawn('echo'))\n"
        "assert(actor.call(e, { ping = f, value = 'through' }) == 'through')\n"
        "assert(actor.call(e, 'x', 0) == 'x' or true)\n", 2));
}

static const char LIMITS[] =
    "local actor = require 'troupe.actor'\n"
    "local e = assert(actor.spawn('echo', nil, { budget = 0.1, memory = 4 * 1024 * 1024 }))\n"
    "local t = actor.now()\n"
    "local v, err = actor.call(e, 'spin')\n"
    "assert(v == nil and err:find('CPU budget exceeded'), err)\n"
    "assert(actor.now() - t < 2)\n"
    "v, err = actor.call(e, 'hog')\n"
    "assert(v == nil and err:find('memory'), err)\n"
    "collectgarbage()\n"
    "assert(actor.call(e, 'still here') == 'still here')\n";

static void test_limits(void **state)
{
    (void)state;
    assert_true(run_main(LIMITS, 2));
}

/* ---- the CPU budget on worker threads (budget.c) ---- */

/* A turn within its budget runs with no hook: a count hook slows every instruction.
 * Under ThreadSanitizer the count hook keeps the budget instead (see budget.c). */
static void test_budget_sets_no_hook(void **state)
{
    (void)state;
#if defined(__SANITIZE_THREAD__)
    const char *want = "f ~= nil and count == 1000";
#else
    const char *want = "f == nil";
#endif
    char code[1024];
    snprintf(code, sizeof code,
             "local f, mask, count = debug.gethook()\n"
             "assert(%s, 'hook: ' .. tostring(f) .. ' ' .. tostring(count))\n"
             "f, mask, count = coroutine.wrap(function() return debug.gethook() end)()\n"
             "assert(%s, 'hook in a coroutine: ' .. tostring(f) .. ' ' .. tostring(count))\n"
             "local ok, e = coroutine.resume(coroutine.create(function() error('x', 0) end))\n"
             "assert(not ok and e == 'x')\n",
             want, want);
    assert_true(run_main_ex(code, 2, true, NULL));
}

/* The watchdog's signal reaches workers of a runtime created with signals blocked,
 * as an embedder may do before it starts threads of its own. (SIGINT and SIGTERM stay
 * open, so that a run that hangs here can be stopped.) */
static void test_budget_with_signals_blocked(void **state)
{
    (void)state;
    sigset_t all, old;
    sigfillset(&all);
    sigdelset(&all, SIGINT);
    sigdelset(&all, SIGTERM);
    assert_int_equal(pthread_sigmask(SIG_BLOCK, &all, &old), 0);
    int ok = run_main(LIMITS, 2);
    assert_int_equal(pthread_sigmask(SIG_SETMASK, &old, NULL), 0);
    assert_true(ok);
}

/* Past the stop deadline, Lua still running is interrupted, budget or not: the
 * runtime stops. (The main script ends at once: a timer of its own could be due on
 * the worker the loop holds.) */
static void test_stop_interrupts_lua(void **state)
{
    (void)state;
    uint64_t t0 = tr_lvm_now_ns();
    assert_true(run_main_stop("local actor = require 'troupe.actor'\n"
                              "local e = assert(actor.spawn('echo', nil, { budget = 86400 }))\n"
                              "actor.send(e, 'spin')\n",
                              2, false, 300, NULL));
    uint64_t ms = (tr_lvm_now_ns() - t0) / 1000000;
    if (ms > 3000)
        fail_msg("the runtime stopped after %llu ms (stop deadline 300 ms)",
                 (unsigned long long)ms);
}

static void test_many_pairs_across_workers(void **state)
{
    (void)state;
    assert_true(run_main(
        "local actor = require 'troupe.actor'\n"
        "local pairs_ = {}\n"
        "for i = 1, 20 do pairs_[i] = { assert(actor.spawn('echo')), assert(actor.spawn('echo')) } end\n"
        "for round = 1, 50 do\n"
        "  for i = 1, 20 do\n"
        "    local p = pairs_[i]\n"
        "    assert(actor.call(p[1], { ping = p[2], value = round }) == round)\n"
        "  end\n"
        "end\n", 2));
}

static void test_failure_is_reported(void **state)
{
    (void)state;
    assert_false(run_main("error('the main script fails')", 2));
    assert_false(run_main("local actor = require 'troupe.actor'\n"
                          "assert(actor.spawn('no_such_module'))\n", 2));
}

/* ---- the chunk cache (chunks.c) ---- */

#define OLD_MTIME ((time_t)1600000000)

static void test_chunk_cache_serves_later_spawns(void **state)
{
    (void)state;
    write_old_file("cached.lua", "return { handle = function(s, m) return m end }\n", OLD_MTIME);
    tr_chunks_stats st;
    assert_true(run_main_ex(
        "local actor = require 'troupe.actor'\n"
        "for i = 1, 20 do\n"
        "  local p = assert(actor.spawn('cached'))\n"
        "  assert(actor.call(p, i) == i)\n"
        "end\n", 2, false, &st));
    assert_int_equal(st.misses, 1);
    assert_int_equal(st.hits, 19);
    assert_int_equal(st.stores, 1);
    assert_int_equal(st.entries, 1);
    assert_true(st.bytes > 0);
}

static void test_chunk_cache_compiles_an_edited_file(void **state)
{
    (void)state;
    write_old_file("edited.lua", "return { handle = function() return 'v1' end }\n", OLD_MTIME);
    char code[2048];
    snprintf(code, sizeof code,
        "local actor = require 'troupe.actor'\n"
        "local path = '%s/edited.lua'\n"
        "local function says() return actor.call(assert(actor.spawn(path)), 'x') end\n"
        "local function write(text, mtime)\n"
        "  local f = assert(io.open(path, 'w')) f:write(text) f:close()\n"
        "  if mtime then assert(os.execute(('touch -m -d @%%d %%q'):format(mtime, path))) end\n"
        "end\n"
        "assert(says() == 'v1') assert(says() == 'v1')\n"
        /* the same size, another old mtime: compiled again, then cached */
        "write(\"return { handle = function() return 'v2' end }\\n\", %lld)\n"
        "assert(says() == 'v2') assert(says() == 'v2')\n"
        /* just written: compiled on every spawn until it is a second old */
        "write(\"return { handle = function() return 'v3' end }\\n\")\n"
        "assert(says() == 'v3') assert(says() == 'v3')\n",
        dir, (long long)OLD_MTIME + 100);
    tr_chunks_stats st;
    assert_true(run_main_ex(code, 2, true, &st));
    assert_int_equal(st.hits, 2);         /* v1 and v2, once each */
    assert_int_equal(st.misses, 4);       /* v1, v2, v3 twice */
    assert_int_equal(st.stores, 2);       /* v1, v2 */
    assert_int_equal(st.evictions, 2);    /* v1 and v2, stale */
    assert_int_equal(st.entries, 0);
}

static void test_chunk_cache_keeps_error_lines(void **state)
{
    (void)state;
    write_old_file("broken.lua", "return {\n  handle = function() end\n  this is not lua\n}\n",
                   OLD_MTIME);
    write_old_file("failing.lua",
                   "return {\n  handle = function(_, m)\n\n    error('boom ' .. m)\n  end,\n}\n",
                   OLD_MTIME);
    tr_chunks_stats st;
    assert_true(run_main_ex(
        "local actor = require 'troupe.actor'\n"
        "for i = 1, 3 do\n"
        "  local p, err = actor.spawn('broken')\n"
        "  assert(p == nil and err:find('broken.lua:3:', 1, true), err)\n"
        "  local v, err2 = actor.call(assert(actor.spawn('failing')), i)\n"
        "  assert(v == nil and err2:find('failing.lua:4: boom ' .. i, 1, true), err2)\n"
        "end\n", 2, false, &st));
    assert_int_equal(st.hits, 2);         /* failing.lua; broken.lua is never stored */
    assert_int_equal(st.stores, 1);
    assert_int_equal(st.entries, 1);
}

/* Scripts' own loadfile, dofile and require compile the text: the cache is for
 * actor scripts only, and its bytes reach no script. */
static void test_chunk_cache_not_for_scripts(void **state)
{
    (void)state;
    write_old_file("shared.lua", "return { handle = function() return 42 end }\n", OLD_MTIME);
    char code[1024];
    snprintf(code, sizeof code,
        "local actor = require 'troupe.actor'\n"
        "local path = '%s/shared.lua'\n"
        "assert(actor.call(assert(actor.spawn(path)), 'x') == 42)\n"
        "assert(actor.call(assert(actor.spawn(path)), 'x') == 42)\n"
        "for _ = 1, 3 do\n"
        "  assert(loadfile(path)().handle() == 42)\n"
        "  assert(dofile(path).handle() == 42)\n"
        "  package.loaded.shared = nil\n"
        "  assert(require('shared').handle() == 42)\n"
        "end\n"
        "assert(load(string.dump(loadfile(path))) == nil)\n", dir);
    tr_chunks_stats st;
    assert_true(run_main_ex(code, 2, false, &st));
    assert_int_equal(st.misses, 1);
    assert_int_equal(st.hits, 1);
}

static void test_chunk_cache_is_bounded(void **state)
{
    (void)state;
    char name[64];
    for (int i = 0; i < 300; i++) {
        snprintf(name, sizeof name, "gen_%d.lua", i);
        write_old_file(name, "return { handle = function(s, m) return m end }\n", OLD_MTIME);
    }
    tr_chunks_stats st;
    assert_true(run_main_ex(
        "local actor = require 'troupe.actor'\n"
        "for i = 0, 299 do\n"
        "  local p = assert(actor.spawn('gen_' .. i))\n"
        "  actor.kill(p, 'kill')\n"
        "end\n"
        "assert(actor.spawn('gen_299'))\n"      /* still there: a hit */
        "assert(actor.spawn('gen_0'))\n", 2, false, &st));   /* dropped long ago */
    assert_int_equal(st.stores, 301);
    assert_int_equal(st.entries, 256);
    assert_int_equal(st.evictions, 45);
    assert_int_equal(st.hits, 1);
    assert_int_equal(st.misses, 301);
}

/* Two actors on two workers spawn from one file at once (TSan watches the cache). */
static void test_chunk_cache_across_workers(void **state)
{
    (void)state;
    write_old_file("many.lua", "return { handle = function(s, m) return m end }\n", OLD_MTIME);
    write_old_file("spawner_c.lua",
                   "local actor = require 'troupe.actor'\n"
                   "return {\n"
                   "  handle = function(s, msg)\n"
                   "    if msg == 'count' then return s.n end\n"
                   "    s.n = 0\n"
                   "    for _ = 1, msg.n do\n"
                   "      actor.kill(assert(actor.spawn(msg.script)), 'kill')\n"
                   "      s.n = s.n + 1\n"
                   "    end\n"
                   "  end,\n"
                   "}\n", OLD_MTIME);
    tr_chunks_stats st;
    assert_true(run_main_ex(
        "local actor = require 'troupe.actor'\n"
        "local a = assert(actor.spawn('spawner_c', nil, { worker = 0 }))\n"
        "local b = assert(actor.spawn('spawner_c', nil, { worker = 1 }))\n"
        "assert(actor.send(a, { n = 100, script = 'many' }))\n"
        "assert(actor.send(b, { n = 100, script = 'many' }))\n"
        "assert(actor.call(a, 'count') == 100)\n"
        "assert(actor.call(b, 'count') == 100)\n", 2, false, &st));
    assert_int_equal(st.hits + st.misses, 202);
    assert_true(st.hits >= 198);
    assert_int_equal(st.entries, 2);
}

/* A pooled VM (handler VMs) keeps freed small blocks for reuse, up to its bound, under
 * the same memory cap, and gives every block back when closed. */
static void test_pooled_vm(void **state)
{
    (void)state;
    tr_alloc_track(1);
    tr_lvm vm;
    tr_lvm_opts o = { .pooled = true, .mem_limit = (size_t)8 << 20 };
    assert_int_equal(tr_lvm_init(&vm, &o), 0);
    const char *garbage =
        "local t = {} for i = 1, 20000 do t[i] = { i, tostring(i) .. 'x' } end\n"
        "t = nil collectgarbage()\n"
        "local s = {} for i = 1, 2000 do s[#s + 1] = ('y'):rep(i % 300) end\n"
        "return #s";
    assert_int_equal(luaL_dostring(vm.L, garbage), LUA_OK);
    assert_int_equal(lua_tointeger(vm.L, -1), 2000);
    lua_pop(vm.L, 1);
#if !defined(__SANITIZE_ADDRESS__)
    assert_true(vm.cached > 0);                 /* freed blocks were kept */
    assert_true(vm.cached <= (size_t)1 << 20);  /* within the bound */
#endif
    size_t cached = vm.cached;
    assert_int_equal(luaL_dostring(vm.L, "local t = {} for i = 1, 1000 do t[i] = {} end"), LUA_OK);
    assert_true(vm.cached <= cached);           /* ... and reused */
    /* the cap still holds */
    assert_int_not_equal(luaL_dostring(vm.L, "local t = {} for i = 1, 1e7 do t[i] = { i } end"),
                         LUA_OK);
    lua_pop(vm.L, 1);
    assert_int_equal(luaL_dostring(vm.L, "return 1 + 1"), LUA_OK);
    tr_lvm_close(&vm);
    assert_int_equal(tr_alloc_live(), 0);
    tr_alloc_track(0);
}

/* tr_lua_default_path: TROUPE_LUA_PATH first, then the framework found from where
 * libtroupe was loaded (this test binary links libtroupe.a from build/.../tests/, so
 * scripts/ of the source tree), then the script's directory; too small a buffer is
 * an error, never a truncated path. */
static void test_default_path(void **state)
{
    (void)state;
    char out[8192], want[8192];
    unsetenv("TROUPE_LUA_PATH");
    assert_int_equal(tr_lua_default_path(out, sizeof out, "/srv/app"), 0);
    char *fw = realpath("scripts", NULL);     /* the tests run from the source root */
    assert_non_null(fw);
    snprintf(want, sizeof want, "%s/?.lua;%s/?/init.lua;/srv/app/?.lua;/srv/app/?/init.lua;./?.lua",
             fw, fw);
    assert_string_equal(out, want);
    free(fw);

    setenv("TROUPE_LUA_PATH", "/opt/mine/?.lua", 1);
    assert_int_equal(tr_lua_default_path(out, sizeof out, NULL), 0);
    assert_true(strncmp(out, "/opt/mine/?.lua;", 16) == 0);
    assert_non_null(strstr(out, ";./?.lua;./?/init.lua;./?.lua"));
    unsetenv("TROUPE_LUA_PATH");

    size_t need = strlen(want) + 1;
    assert_int_equal(tr_lua_default_path(out, need, "/srv/app"), 0);
    assert_int_equal(tr_lua_default_path(out, need - 1, "/srv/app"), TR_EINVAL);
}

/* The C bridge (bridge.c): a Lua actor spawned from C, called and sent JSON. */
static void test_bridge_json(void **state)
{
    (void)state;
    write_file("rules.lua",
               "return {\n"
               "  init = function() return { seen = 0 } end,\n"
               "  handle = function(s, msg)\n"
               "    if msg.op == 'note' then s.seen = s.seen + 1 return end\n"
               "    if msg.op == 'price' then\n"
               "      local total = 0\n"
               "      for _, item in ipairs(msg.items) do total = total + item.qty * item.price end\n"
               "      return { total = total, discount = total > 100, seen = s.seen, note = msg.note }\n"
               "    end\n"
               "    error('unknown op ' .. tostring(msg.op), 0)\n"
               "  end,\n"
               "}\n");
    write_file("broken.lua", "return {\n  handle = function(s, m) return m end,,\n}\n");
    tr_runtime *rt = th_runtime(2);
    char path[128], err[256], *reply = NULL;
    size_t len = 0;
    tr_pid pid = 0;
    snprintf(path, sizeof path, "%s/rules.lua", dir);
    assert_int_equal(tr_spawn_lua(rt, path, NULL, NULL, &pid, err, sizeof err), 0);

    assert_int_equal(tr_lua_send_json(rt, pid, "{\"op\":\"note\"}", 13, err, sizeof err), 0);
    const char *q = "{\"op\":\"price\",\"items\":[{\"qty\":3,\"price\":2.5},"
                    "{\"qty\":1,\"price\":100}],\"note\":null}";
    assert_int_equal(tr_lua_call_json(rt, pid, q, strlen(q), 5000, &reply, &len, err,
                                      sizeof err), 0);
    /* an object of four members, in the table's order */
    assert_int_equal(len, strlen("{\"discount\":true,\"note\":null,\"seen\":1,\"total\":107.5}"));
    assert_int_equal(len, strlen(reply));
    assert_true(reply[0] == '{' && reply[len - 1] == '}');
    assert_non_null(strstr(reply, "\"total\":107.5"));
    assert_non_null(strstr(reply, "\"discount\":true"));
    assert_non_null(strstr(reply, "\"seen\":1"));    /* the note sent before */
    assert_non_null(strstr(reply, "\"note\":null"));
    tr_free(reply);

    /* the handler's error comes back as TR_EFAIL with its message */
    assert_int_equal(tr_lua_call_json(rt, pid, "{\"op\":\"x\"}", 10, 5000, &reply, NULL,
                                      err, sizeof err), TR_EFAIL);
    assert_null(reply);
    assert_string_equal(err, "unknown op x");
    /* invalid JSON never reaches the actor */
    assert_int_equal(tr_lua_call_json(rt, pid, "{\"op\":", 6, 5000, &reply, NULL, err,
                                      sizeof err), TR_EINVAL);
    assert_non_null(strstr(err, "invalid JSON at byte 7"));
    assert_int_equal(tr_lua_send_json(rt, pid, "[1,", 3, err, sizeof err), TR_EINVAL);

    /* a script that does not load: TR_EFAIL with file and line */
    snprintf(path, sizeof path, "%s/broken.lua", dir);
    tr_pid bad = 0;
    assert_int_equal(tr_spawn_lua(rt, path, NULL, NULL, &bad, err, sizeof err), TR_EFAIL);
    assert_non_null(strstr(err, "broken.lua:2:"));

    /* an actor that is gone */
    assert_int_equal(tr_kill(rt, pid, TR_EXIT_KILL), 0);
    assert_true(TH_WAIT_UNTIL(!tr_alive(rt, pid), 2000));
    assert_int_equal(tr_lua_call_json(rt, pid, "1", 1, 1000, &reply, NULL, err, sizeof err),
                     TR_ENOPROC);
    th_finish(rt);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_messages_and_calls),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_budget_sets_no_hook),
        cmocka_unit_test(test_budget_with_signals_blocked),
        cmocka_unit_test(test_stop_interrupts_lua),
        cmocka_unit_test(test_many_pairs_across_workers),
        cmocka_unit_test(test_failure_is_reported),
        cmocka_unit_test(test_chunk_cache_serves_later_spawns),
        cmocka_unit_test(test_chunk_cache_compiles_an_edited_file),
        cmocka_unit_test(test_chunk_cache_keeps_error_lines),
        cmocka_unit_test(test_chunk_cache_not_for_scripts),
        cmocka_unit_test(test_chunk_cache_is_bounded),
        cmocka_unit_test(test_chunk_cache_across_workers),
        cmocka_unit_test(test_pooled_vm),
        cmocka_unit_test(test_default_path),
        cmocka_unit_test(test_bridge_json),
    };
    return cmocka_run_group_tests_name("lua", tests, setup, teardown);
}
