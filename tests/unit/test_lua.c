/* test_lua.c — the Lua host from C, so that ASan and TSan watch it: Lua actors
 * spawned from a main script exchange sends and calls across both workers, wait,
 * fail, hit their memory cap and CPU budget, and every allocation made through the
 * Lua allocator is returned when the runtime is freed. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "harness.h"
#include "lactor.h"

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

/* Runs code as the main actor of a fresh runtime; returns whether it succeeded. */
static int run_main(const char *code, int workers)
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
    tr_lua_main_result result = { .stop_deadline_ms = 5000 };
    tr_lua_main_watch(&result);
    tr_pid pid;
    int rc = tr_lua_spawn_actor(rt, &req, NULL, &pid);
    if (rc < 0)
        fail_msg("spawn: %s", req.err);
    assert_int_equal(tr_send(rt, pid, TR_LUA_TAG_START, NULL, 0), 0);
    assert_int_equal(tr_runtime_wait(rt), 0);   /* the main actor stops the runtime */
    tr_runtime_free(rt);
    tr_lua_main_watch(NULL);
    assert_int_equal(tr_alloc_live(), 0);
    tr_alloc_track(0);
    return result.done && result.ok;
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

static void test_limits(void **state)
{
    (void)state;
    assert_true(run_main(
        "local actor = require 'troupe.actor'\n"
        "local e = assert(actor.spawn('echo', nil, { budget = 0.1, memory = 4 * 1024 * 1024 }))\n"
        "local t = actor.now()\n"
        "local v, err = actor.call(e, 'spin')\n"
        "assert(v == nil and err:find('CPU budget exceeded'), err)\n"
        "assert(actor.now() - t < 2)\n"
        "v, err = actor.call(e, 'hog')\n"
        "assert(v == nil and err:find('memory'), err)\n"
        "collectgarbage()\n"
        "assert(actor.call(e, 'still here') == 'still here')\n", 2));
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_messages_and_calls),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_many_pairs_across_workers),
        cmocka_unit_test(test_failure_is_reported),
    };
    return cmocka_run_group_tests_name("lua", tests, setup, teardown);
}
