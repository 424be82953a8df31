/*
 * vm.c — a Lua state for one actor or handler VM.
 *
 * Memory: every block goes through tr_realloc, counted; past the cap the allocator
 * returns NULL and Lua raises a memory error in the running coroutine.
 * CPU: the budget of the current message or request is kept by budget.c (a watchdog
 * that sets a count hook once the deadline passed).
 * Sandbox: scripts load as text only; os.execute, io.popen and friends are gone
 * unless the VM is created unsafe.
 * Size: a sandboxed state opens coroutine, table, math, utf8, os and string on first
 * use (see "lazy libraries"): an idle actor that never touches them does not pay for
 * them (each function name is a string the state owns).
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lualib.h>

#include "chunks.h"
#include "vm.h"

uint64_t tr_lvm_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*
 * Pooled VMs (tr_lvm_opts.pooled) keep the blocks Lua frees, up to POOL_MAX bytes
 * each, in free lists by 16-byte size class up to POOL_BLOCK bytes: a request's
 * tables and strings reuse the last request's blocks without a trip through malloc
 * (perf on /fortunes: 11% of the worker in malloc, free and malloc_consolidate).
 * Lua passes the old size of every block it frees, so a block's class is known.
 * Off under AddressSanitizer, which must see every free.
 */
#define POOL_BLOCK 256
#define POOL_CLASSES (POOL_BLOCK / 16)
#define POOL_MAX ((size_t)1 << 20)
#if defined(__SANITIZE_ADDRESS__)
#define POOL_ON 0
#else
#define POOL_ON 1
#endif

static inline size_t pool_class(size_t n)
{
    return (n + 15) / 16 - 1;
}

static void *pool_get(tr_lvm *vm, size_t n)
{
    size_t c = pool_class(n);
    void *p = vm->cache[c];
    if (p) {
        vm->cache[c] = *(void **)p;
        vm->cached -= (c + 1) * 16;
        return p;
    }
    return tr_malloc((c + 1) * 16);
}

static void pool_put(tr_lvm *vm, void *p, size_t n)
{
    size_t c = pool_class(n);
    if (vm->cached + (c + 1) * 16 > POOL_MAX) {
        tr_free(p);
        return;
    }
    *(void **)p = vm->cache[c];
    vm->cache[c] = p;
    vm->cached += (c + 1) * 16;
}

static void pool_drain(tr_lvm *vm)
{
    if (vm->cache == NULL)
        return;
    for (size_t c = 0; c < POOL_CLASSES; c++)
        while (vm->cache[c]) {
            void *p = vm->cache[c];
            vm->cache[c] = *(void **)p;
            tr_free(p);
        }
    tr_free(vm->cache);
    vm->cache = NULL;
    vm->cached = 0;
}

static void *vm_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    tr_lvm *vm = ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        if (ptr && vm->cache && old <= POOL_BLOCK)
            pool_put(vm, ptr, old);
        else
            tr_free(ptr);
        vm->used -= old;
        return NULL;
    }
    if (nsize > old && vm->used - old + nsize > vm->limit)
        return NULL;
    void *p;
    if (vm->cache && (nsize <= POOL_BLOCK || (ptr && old <= POOL_BLOCK))) {
        if (ptr && old <= POOL_BLOCK && nsize <= POOL_BLOCK &&
            pool_class(old) == pool_class(nsize)) {
            p = ptr;                            /* the same class: the same block */
        } else {
            p = nsize <= POOL_BLOCK ? pool_get(vm, nsize) : tr_malloc(nsize);
            if (p && ptr) {
                memcpy(p, ptr, old < nsize ? old : nsize);
                if (old <= POOL_BLOCK)
                    pool_put(vm, ptr, old);
                else
                    tr_free(ptr);
            }
        }
    } else {
        p = tr_realloc(ptr, nsize);
    }
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
    return tr_chunks_load(tr_lvm_of(L)->rt, L, path);
}

/* What scripts load with loadfile, dofile and require: always compiled from the text. */
static int load_text_file(lua_State *L, const char *path)
{
    return luaL_loadfilex(L, path, "t");
}

static int safe_loadfile(lua_State *L)
{
    const char *path = luaL_optstring(L, 1, NULL);
    if (path == NULL)
        return luaL_error(L, "troupe: loadfile needs a file name");
    if (load_text_file(L, path) != LUA_OK) {
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
    if (load_text_file(L, path) != LUA_OK)
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

static int xpcall_k(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;
    (void)ctx;
    return lua_gettop(L);
}

/* The real xpcall through lua_callk: the protected function may yield (actor.call,
 * actor.sleep, the drivers) as it could under the stock xpcall. */
static int safe_xpcall(lua_State *L)
{
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_pushvalue(L, 2);
    lua_pushcclosure(L, xpcall_handler, 1);
    lua_replace(L, 2);
    lua_pushvalue(L, lua_upvalueindex(1));   /* the real xpcall */
    lua_insert(L, 1);
    lua_callk(L, lua_gettop(L) - 1, LUA_MULTRET, 0, xpcall_k);
    return xpcall_k(L, LUA_OK, 0);
}

/* ---- lazy libraries ----
 *
 * A sandboxed state opens base and package at once; the six libraries below open the
 * first time a script names them (string also when a string is indexed or coerced:
 * see the stand-in string metatable further down). Until then _G and package.loaded
 * share one metatable: __index opens the library asked for (as a global or through
 * require), sets it in both tables (where the script has not set its own value) and
 * returns it; __newindex opens it before a script's assignment to that name lands,
 * so `math = nil` or `package.loaded.math = nil` end as they would in stock Lua;
 * __pairs opens every one first. getmetatable and setmetatable on those tables also
 * open everything and then see no metatable of ours. When nothing is left to open the
 * metatable goes: from then on the state is a stock one. What still tells the
 * difference: rawget, rawset and next on _G or package.loaded, before the libraries
 * are opened. An unsafe state opens everything at once (luaL_openlibs).
 */
static const luaL_Reg lazy_libs[] = {
    { LUA_COLIBNAME, luaopen_coroutine }, { LUA_TABLIBNAME, luaopen_table },
    { LUA_MATHLIBNAME, luaopen_math },    { LUA_UTF8LIBNAME, luaopen_utf8 },
    { LUA_OSLIBNAME, luaopen_os },        { LUA_STRLIBNAME, luaopen_string },
};
#define N_LAZY ((int)(sizeof lazy_libs / sizeof *lazy_libs))
#define LAZY_STRING 5   /* its index in lazy_libs */

static int lazy_index(lua_State *L);

/* Replaces the os functions that touch the system (one shared C function: no
 * allocation per function) in the table at idx. */
static void block_os(lua_State *L, int idx)
{
    static const char *os_blocked[] = { "execute", "exit", "remove", "rename",
                                        "tmpname", "setlocale", NULL };
    for (int i = 0; os_blocked[i]; i++) {
        lua_pushcfunction(L, blocked);
        lua_setfield(L, idx, os_blocked[i]);
    }
}

/* Whether the value at idx is a table with the lazy metatable. */
static bool has_lazy_mt(lua_State *L, int idx)
{
    if (!lua_istable(L, idx) || !lua_getmetatable(L, idx))
        return false;
    lua_pushliteral(L, "__index");
    lua_rawget(L, -2);
    bool lazy = lua_tocfunction(L, -1) == lazy_index;
    lua_pop(L, 2);
    return lazy;
}

/* The index in lazy_libs of the library not yet opened that the value at idx names,
 * or -1. */
static int lazy_find(lua_State *L, int idx)
{
    tr_lvm *vm = tr_lvm_of(L);
    if (vm->lazy == 0 || lua_type(L, idx) != LUA_TSTRING)
        return -1;
    const char *name = lua_tostring(L, idx);
    for (int i = 0; i < N_LAZY; i++)
        if ((vm->lazy & (1u << i)) && strcmp(name, lazy_libs[i].name) == 0)
            return i;
    return -1;
}

/* t[name] = v (raw) unless t holds something there already; t and v are stack
 * indexes (absolute). */
static void set_if_absent(lua_State *L, int t, const char *name, int v)
{
    lua_pushstring(L, name);
    if (lua_rawget(L, t) == LUA_TNIL) {
        lua_pushstring(L, name);
        lua_pushvalue(L, v);
        lua_rawset(L, t);
    }
    lua_pop(L, 1);
}

/* Opens lazy_libs[i] into package.loaded and _G. On an error (out of memory) it stays
 * to be opened. */
static void lazy_open(lua_State *L, int i)
{
    lua_pushcfunction(L, lazy_libs[i].func);
    lua_pushstring(L, lazy_libs[i].name);
    lua_call(L, 1, 1);
    int lib = lua_gettop(L);
    if (lazy_libs[i].func == luaopen_os)
        block_os(L, lib);
    if (lazy_libs[i].func == luaopen_coroutine)
        tr__lvm_track_coroutines(L, lib);
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);  /* lib G LOADED */
    set_if_absent(L, lib + 2, lazy_libs[i].name, lib);
    set_if_absent(L, lib + 1, lazy_libs[i].name, lib);
    tr_lvm *vm = tr_lvm_of(L);
    vm->lazy &= (uint8_t)~(1u << i);
    if (vm->lazy == 0) {   /* nothing left to open: stock tables from here on */
        lua_pushnil(L);
        lua_setmetatable(L, lib + 1);
        lua_pushnil(L);
        lua_setmetatable(L, lib + 2);
    }
    lua_settop(L, lib - 1);
}

static void lazy_open_all(lua_State *L)
{
    tr_lvm *vm = tr_lvm_of(L);
    for (int i = 0; i < N_LAZY && vm->lazy; i++)
        if (vm->lazy & (1u << i))
            lazy_open(L, i);
}

/* __index(t, k) of _G and package.loaded. */
static int lazy_index(lua_State *L)
{
    int i = lazy_find(L, 2);
    if (i < 0)
        return 0;   /* nil */
    lazy_open(L, i);
    lua_settop(L, 2);
    lua_rawget(L, 1);
    return 1;
}

/* __newindex(t, k, v) of _G and package.loaded. */
static int lazy_newindex(lua_State *L)
{
    int i = lazy_find(L, 2);
    if (i >= 0)
        lazy_open(L, i);
    lua_settop(L, 3);
    lua_rawset(L, 1);
    return 0;
}

/* next(t, k), as the base library's. */
static int lazy_next(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 2);
    if (lua_next(L, 1))
        return 2;
    lua_pushnil(L);
    return 1;
}

/* __pairs(t) of _G and package.loaded. */
static int lazy_pairs(lua_State *L)
{
    lazy_open_all(L);
    lua_pushcfunction(L, lazy_next);
    lua_pushvalue(L, 1);
    lua_pushnil(L);
    return 3;
}

/* Strings index and coerce through the string metatable, which luaopen_string sets.
 * Until the library is open, strings have a stand-in one. Its __index opens the
 * library (whose metatable replaces the stand-in) and indexes again, so ("x"):upper()
 * works as in stock Lua. Its arithmetic metamethods do what the string library's do
 * (lstrlib.c: numeric strings coerce, anything else raises the same message from the
 * same call level) without opening it: "10" + 1 costs no library. */
static void open_string(lua_State *L)
{
    if (tr_lvm_of(L)->lazy & (1u << LAZY_STRING))
        lazy_open(L, LAZY_STRING);
}

static int string_index(lua_State *L)
{
    open_string(L);
    lua_settop(L, 2);
    lua_gettable(L, 1);
    return 1;
}

/* Pushes the value at arg as a number and returns 1 if it is one or a numeric string
 * (pushes nothing and returns 0 otherwise). */
static int string_tonum(lua_State *L, int arg)
{
    if (lua_type(L, arg) == LUA_TNUMBER) {
        lua_pushvalue(L, arg);
        return 1;
    }
    size_t len;
    const char *s = lua_tolstring(L, arg, &len);
    return s != NULL && lua_stringtonumber(L, s) == len + 1;
}

static int string_arith(lua_State *L, int op, const char *event)
{
    if (string_tonum(L, 1) && string_tonum(L, 2)) {
        lua_arith(L, op);
        return 1;
    }
    lua_settop(L, 2);
    /* Not numbers: the second operand's own metamethod, if it is not a string. */
    if (lua_type(L, 2) == LUA_TSTRING || !luaL_getmetafield(L, 2, event))
        return luaL_error(L, "attempt to %s a '%s' with a '%s'", event + 2,
                          luaL_typename(L, -2), luaL_typename(L, -1));
    lua_insert(L, -3);
    lua_call(L, 2, 1);
    return 1;
}

static int string_add(lua_State *L) { return string_arith(L, LUA_OPADD, "__add"); }
static int string_sub(lua_State *L) { return string_arith(L, LUA_OPSUB, "__sub"); }
static int string_mul(lua_State *L) { return string_arith(L, LUA_OPMUL, "__mul"); }
static int string_mod(lua_State *L) { return string_arith(L, LUA_OPMOD, "__mod"); }
static int string_pow(lua_State *L) { return string_arith(L, LUA_OPPOW, "__pow"); }
static int string_div(lua_State *L) { return string_arith(L, LUA_OPDIV, "__div"); }
static int string_idiv(lua_State *L) { return string_arith(L, LUA_OPIDIV, "__idiv"); }
static int string_unm(lua_State *L) { return string_arith(L, LUA_OPUNM, "__unm"); }

/* The metamethods of luaopen_string's string metatable, standing in. */
static const luaL_Reg string_standin[] = {
    { "__index", string_index }, { "__add", string_add },   { "__sub", string_sub },
    { "__mul", string_mul },     { "__mod", string_mod },   { "__pow", string_pow },
    { "__div", string_div },     { "__idiv", string_idiv }, { "__unm", string_unm },
    { NULL, NULL }
};

/* Sets the lazy metatable on _G and package.loaded and the stand-in string
 * metatable; every library in lazy_libs is to be opened. */
static void lazy_setup(lua_State *L)
{
    tr_lvm_of(L)->lazy = (uint8_t)((1u << N_LAZY) - 1);
    luaL_newlibtable(L, string_standin);
    luaL_setfuncs(L, string_standin, 0);
    lua_pushliteral(L, "");
    lua_insert(L, -2);
    lua_setmetatable(L, -2);
    lua_pop(L, 1);
    lua_createtable(L, 0, 3);
    lua_pushcfunction(L, lazy_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, lazy_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, lazy_pairs);
    lua_setfield(L, -2, "__pairs");
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
    lua_pushvalue(L, -2);
    lua_setmetatable(L, -2);
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_pushvalue(L, -3);
    lua_setmetatable(L, -2);
    lua_pop(L, 3);
}

/* getmetatable(v), as the base library's, except that no stand-in shows: _G and
 * package.loaded have none once everything is open, strings the string library's. */
static int safe_getmetatable(lua_State *L)
{
    luaL_checkany(L, 1);
    if (has_lazy_mt(L, 1))
        lazy_open_all(L);
    else if (lua_type(L, 1) == LUA_TSTRING)
        open_string(L);
    if (!lua_getmetatable(L, 1)) {
        lua_pushnil(L);
        return 1;
    }
    luaL_getmetafield(L, 1, "__metatable");
    return 1;
}

/* Lua runs __gc metamethods with hooks off, so a finalizer could never be stopped:
 * the sandbox refuses them. A script's metatable on _G or package.loaded replaces
 * the lazy one once every library is open. */
static int safe_setmetatable(lua_State *L)
{
    if (lua_istable(L, 2)) {
        lua_pushliteral(L, "__gc");
        if (lua_rawget(L, 2) != LUA_TNIL)
            return luaL_error(L, "troupe: __gc metamethods are not available in the "
                                 "sandbox (a finalizer cannot be given a CPU budget)");
        lua_pop(L, 1);
    }
    if (has_lazy_mt(L, 1))
        lazy_open_all(L);
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
 * traceback, os without the functions that touch the system, load forced to text, no
 * native modules. Fewer libraries also keep an idle actor small: every function name
 * is a string the state owns; hence the lazy ones above.
 */
static void open_sandboxed(lua_State *L)
{
    static const luaL_Reg libs[] = {
        { LUA_GNAME, luaopen_base }, { LUA_LOADLIBNAME, luaopen_package }, { NULL, NULL }
    };
    for (const luaL_Reg *lib = libs; lib->func; lib++) {
        luaL_requiref(L, lib->name, lib->func, 1);
        lua_pop(L, 1);
    }
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
    lua_pushcfunction(L, safe_getmetatable);
    lua_setglobal(L, "getmetatable");
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
    lazy_setup(L);
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
    if (load_text_file(L, file) != LUA_OK)
        return luaL_error(L, "error loading module '%s' from file '%s':\n\t%s", name,
                          file, lua_tostring(L, -1));
    lua_pushstring(L, file);
    return 2;
}

static int open_all(lua_State *L)
{
    tr_lvm *vm = lua_touserdata(L, 1);
    const char *lua_path = lua_touserdata(L, 2);
    if (vm->unsafe) {
        luaL_openlibs(L);
        lua_getglobal(L, LUA_COLIBNAME);
        tr__lvm_track_coroutines(L, -1);
        lua_pop(L, 1);
    } else
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
    if (POOL_ON && opts && opts->pooled) {
        vm->cache = tr_malloc(sizeof *vm->cache * POOL_CLASSES);
        if (vm->cache == NULL)
            return TR_ENOMEM;
        memset(vm->cache, 0, sizeof *vm->cache * POOL_CLASSES);
    }
    vm->L = lua_newstate(vm_alloc, vm);
    if (vm->L == NULL) {
        pool_drain(vm);
        return TR_ENOMEM;
    }
    /* Nothing to collect while the state is being built: no GC steps until then. */
    lua_gc(vm->L, LUA_GCSTOP);
    lua_pushcfunction(vm->L, open_all);
    lua_pushlightuserdata(vm->L, vm);
    lua_pushlightuserdata(vm->L, (void *)(opts ? opts->lua_path : NULL));
    if (lua_pcall(vm->L, 2, 0, 0) != LUA_OK) {
        lua_close(vm->L);
        vm->L = NULL;
        pool_drain(vm);
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
    pool_drain(vm);
}
