/*
 * vm.c — a Lua state for one actor or handler VM.
 *
 * Memory: every block goes through tr_realloc, counted; past the cap the allocator
 * returns NULL and Lua raises a memory error in the running coroutine.
 * CPU: a count hook every HOOK_EVERY instructions compares the clock with the
 * deadline of the current message. Once it has passed, the hook fires at every
 * instruction and raises each time, so a pcall in the script may catch the error but
 * cannot go on running: the next instruction after the pcall raises again, up to
 * the message's own protected call.
 * Sandbox: scripts load as text only; os.execute, io.popen and friends are gone
 * unless the VM is created unsafe.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lualib.h>

#include "vm.h"

#define HOOK_EVERY 1000

uint64_t tr_lvm_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *vm_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    tr_lvm *vm = ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        tr_free(ptr);
        vm->used -= old;
        return NULL;
    }
    if (nsize > old && vm->used - old + nsize > vm->limit)
        return NULL;
    void *p = tr_realloc(ptr, nsize);
    if (p)
        vm->used = vm->used - old + nsize;
    return p;
}

tr_lvm *tr_lvm_of(lua_State *L)
{
    void *ud;
    lua_getallocf(L, &ud);
    return ud;
}

static void budget_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    tr_lvm *vm = tr_lvm_of(L);
    bool stopped = vm->rt && tr_runtime_stopping(vm->rt) == 2;
    if (!vm->expired) {
        if (!stopped && (vm->deadline == 0 || tr_lvm_now_ns() < vm->deadline))
            return;
        vm->expired = true;
    }
    /* From now on at every instruction of this thread, so it cannot be outrun. */
    lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
    luaL_error(L, stopped ? TR_LVM_STOPPED_MSG : TR_LVM_BUDGET_MSG);
}

void tr_lvm_arm(tr_lvm *vm, lua_State *co)
{
    vm->expired = false;
    vm->deadline = vm->budget_ns ? tr_lvm_now_ns() + vm->budget_ns : 0;
    lua_sethook(co, budget_hook, LUA_MASKCOUNT, HOOK_EVERY);
}

void tr_lvm_disarm(tr_lvm *vm, lua_State *co)
{
    vm->deadline = 0;
    vm->expired = false;
    lua_sethook(co, NULL, 0, 0);
}

/* ---- sandbox ---- */

/* load(chunk, name, mode, env) with mode forced to text. */
static int safe_load(lua_State *L)
{
    int n = lua_gettop(L);
    if (n < 3)
        lua_settop(L, 3);
    else if (!lua_isnil(L, 3) && strcmp(luaL_checkstring(L, 3), "t") != 0)
        return luaL_error(L, "troupe: only text chunks can be loaded");
    lua_pushliteral(L, "t");
    lua_replace(L, 3);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    return lua_gettop(L);
}

int tr_lvm_loadfile(lua_State *L, const char *path)
{
    return luaL_loadfilex(L, path, "t");
}

static int safe_loadfile(lua_State *L)
{
    const char *path = luaL_optstring(L, 1, NULL);
    if (path == NULL)
        return luaL_error(L, "troupe: loadfile needs a file name");
    if (tr_lvm_loadfile(L, path) != LUA_OK) {
        lua_pushnil(L);
        lua_insert(L, -2);
        return 2;
    }
    if (!lua_isnoneornil(L, 3)) {   /* env */
        lua_pushvalue(L, 3);
        if (!lua_setupvalue(L, -2, 1))
            lua_pop(L, 1);
    }
    return 1;
}

static int safe_dofile(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    lua_settop(L, 1);
    if (tr_lvm_loadfile(L, path) != LUA_OK)
        return lua_error(L);
    lua_call(L, 0, LUA_MULTRET);
    return lua_gettop(L) - 1;
}

static int blocked(lua_State *L)
{
    return luaL_error(L, "troupe: not available in the sandbox (run with --unsafe)");
}

/* The budget error is raised from inside the count hook, where Lua runs with hooks
 * off: an xpcall message handler called there would run unmetered. Once the budget
 * has run out the script's handler is skipped (the error goes on unchanged). */
static int xpcall_handler(lua_State *L)
{
    if (tr_lvm_of(L)->expired)
        return 1;
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

static int safe_xpcall(lua_State *L)
{
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_pushvalue(L, 2);
    lua_pushcclosure(L, xpcall_handler, 1);
    lua_replace(L, 2);
    lua_pushvalue(L, lua_upvalueindex(1));   /* the real xpcall */
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    return lua_gettop(L);
}

/* Lua runs __gc metamethods with hooks off, so a finalizer could never be stopped:
 * the sandbox refuses them. */
static int safe_setmetatable(lua_State *L)
{
    if (lua_istable(L, 2)) {
        lua_pushliteral(L, "__gc");
        if (lua_rawget(L, 2) != LUA_TNIL)
            return luaL_error(L, "troupe: __gc metamethods are not available in the "
                                 "sandbox (a finalizer cannot be given a CPU budget)");
        lua_pop(L, 1);
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

/* debug.traceback, the one debug function a sandboxed script keeps. */
static int traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (msg == NULL && !lua_isnoneornil(L, 1)) {
        lua_pushvalue(L, 1);
        return 1;
    }
    luaL_traceback(L, L, msg, (int)luaL_optinteger(L, 2, 1));
    return 1;
}

/*
 * The sandboxed state opens only what a script may use: no io, no debug but
 * traceback, os without the functions that touch the system (they raise: one shared
 * C function, no allocation per state), load forced to text, no native modules.
 * Fewer libraries also keep an idle actor small: every function name is a string
 * the state owns.
 */
static void open_sandboxed(lua_State *L)
{
    static const luaL_Reg libs[] = {
        { LUA_GNAME, luaopen_base },          { LUA_LOADLIBNAME, luaopen_package },
        { LUA_COLIBNAME, luaopen_coroutine }, { LUA_TABLIBNAME, luaopen_table },
        { LUA_STRLIBNAME, luaopen_string },   { LUA_MATHLIBNAME, luaopen_math },
        { LUA_UTF8LIBNAME, luaopen_utf8 },    { LUA_OSLIBNAME, luaopen_os },
        { NULL, NULL }
    };
    static const char *os_blocked[] = { "execute", "exit", "remove", "rename",
                                        "tmpname", "setlocale", NULL };
    for (const luaL_Reg *lib = libs; lib->func; lib++) {
        luaL_requiref(L, lib->name, lib->func, 1);
        lua_pop(L, 1);
    }
    lua_getglobal(L, "os");
    for (int i = 0; os_blocked[i]; i++) {
        lua_pushcfunction(L, blocked);
        lua_setfield(L, -2, os_blocked[i]);
    }
    lua_pop(L, 1);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, traceback);
    lua_setfield(L, -2, "traceback");
    lua_setglobal(L, "debug");
    lua_getglobal(L, "load");
    lua_pushcclosure(L, safe_load, 1);
    lua_setglobal(L, "load");
    lua_getglobal(L, "xpcall");
    lua_pushcclosure(L, safe_xpcall, 1);
    lua_setglobal(L, "xpcall");
    lua_getglobal(L, "setmetatable");
    lua_pushcclosure(L, safe_setmetatable, 1);
    lua_setglobal(L, "setmetatable");
    lua_pushcfunction(L, safe_loadfile);
    lua_setglobal(L, "loadfile");
    lua_pushcfunction(L, safe_dofile);
    lua_setglobal(L, "dofile");
    /* package.loadlib and the C searchers (3 and 4) load native code. */
    lua_getglobal(L, "package");
    lua_pushcfunction(L, blocked);
    lua_setfield(L, -2, "loadlib");
    lua_pushliteral(L, "");
    lua_setfield(L, -2, "cpath");
    lua_getfield(L, -1, "searchers");
    lua_pushnil(L);
    lua_rawseti(L, -2, 4);
    lua_pushnil(L);
    lua_rawseti(L, -2, 3);
    lua_pop(L, 2);
}

/* The Lua searcher of package.searchers[2], loading text only. */
static int text_searcher(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "path");
    const char *path = lua_tostring(L, -1);
    if (path == NULL)
        return luaL_error(L, "package.path must be a string");
    lua_getfield(L, -2, "searchpath");
    lua_pushstring(L, name);
    lua_pushstring(L, path);
    lua_call(L, 2, 2);                      /* filename | nil, err */
    if (lua_isnil(L, -2))
        return 1;                           /* the error message */
    const char *file = lua_tostring(L, -2);
    if (tr_lvm_loadfile(L, file) != LUA_OK)
        return luaL_error(L, "error loading module '%s' from file '%s':\n\t%s", name,
                          file, lua_tostring(L, -1));
    lua_pushstring(L, file);
    return 2;
}

static int open_all(lua_State *L)
{
    tr_lvm *vm = lua_touserdata(L, 1);
    const char *lua_path = lua_touserdata(L, 2);
    if (vm->unsafe)
        luaL_openlibs(L);
    else
        open_sandboxed(L);
    lua_getglobal(L, "package");
    if (lua_path) {
        lua_pushstring(L, lua_path);
        lua_setfield(L, -2, "path");
    }
    lua_getfield(L, -1, "searchers");
    lua_pushcfunction(L, text_searcher);
    lua_rawseti(L, -2, 2);
    lua_pop(L, 2);
    tr_lua_preload(L);
    return 0;
}

int tr_lvm_init(tr_lvm *vm, const tr_lvm_opts *opts)
{
    memset(vm, 0, sizeof(*vm));
    vm->limit = opts && opts->mem_limit ? opts->mem_limit : (size_t)64 << 20;
    uint64_t budget_ms = opts && opts->budget_ms ? opts->budget_ms : 1000;
    vm->budget_ns = budget_ms == UINT64_MAX ? 0 : budget_ms * 1000000u;
    vm->child_budget_ms = opts && opts->child_budget_ms ? opts->child_budget_ms : budget_ms;
    vm->unsafe = opts && opts->unsafe;
    vm->L = lua_newstate(vm_alloc, vm);
    if (vm->L == NULL)
        return TR_ENOMEM;
    /* Nothing to collect while the state is being built: no GC steps until then. */
    lua_gc(vm->L, LUA_GCSTOP);
    lua_pushcfunction(vm->L, open_all);
    lua_pushlightuserdata(vm->L, vm);
    lua_pushlightuserdata(vm->L, (void *)(opts ? opts->lua_path : NULL));
    if (lua_pcall(vm->L, 2, 0, 0) != LUA_OK) {
        lua_close(vm->L);
        vm->L = NULL;
        return TR_ENOMEM;
    }
    lua_gc(vm->L, LUA_GCRESTART);
    return 0;
}

void tr_lvm_close(tr_lvm *vm)
{
    if (vm->L)
        lua_close(vm->L);
    vm->L = NULL;
}
