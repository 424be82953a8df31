/* bench/lua_bare.c: bench/lua/cpu.lua's work in a bare Lua 5.4 state (no hook, no
 * sandbox, the system's liblua5.4), as actors.lua.cpu runs it in an actor: one warm-up
 * run, then the median of 5.
 *   bench_lua_bare bench/lua/cpu.lua
 * Prints `BENCH actors.lua.cpu_bare <seconds> s` and the work's result. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <lauxlib.h>
#include <lualib.h>

#define RUNS 5

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_lua_bare FILE.lua\n");
        return 2;
    }
    lua_State *L = luaL_newstate();
    if (L == NULL)
        return 1;
    luaL_openlibs(L);
    if (luaL_dofile(L, argv[1]) != LUA_OK || !lua_isfunction(L, -1)) {
        fprintf(stderr, "bench_lua_bare: %s\n", lua_tostring(L, -1));
        return 1;
    }
    double t[RUNS];
    lua_Integer result = 0;
    for (int i = -1; i < RUNS; i++) {
        lua_pushvalue(L, -1);
        double t0 = now();
        if (lua_pcall(L, 0, 1, 0) != LUA_OK) {
            fprintf(stderr, "bench_lua_bare: %s\n", lua_tostring(L, -1));
            return 1;
        }
        if (i >= 0)
            t[i] = now() - t0;
        result = lua_tointeger(L, -1);
        lua_pop(L, 1);
        lua_gc(L, LUA_GCCOLLECT);
    }
    qsort(t, RUNS, sizeof *t, by_value);
    printf("BENCH actors.lua.cpu_bare %.4f s\n", t[RUNS / 2]);
    printf("# cpu.lua result %lld\n", (long long)result);
    lua_close(L);
    return 0;
}
