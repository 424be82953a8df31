/* lactor.h — Lua actors: a VM per actor, a pooled coroutine per message. */
#ifndef TR_LUA_LACTOR_H
#define TR_LUA_LACTOR_H

#include <lua.h>

#include "codec.h"
#include "troupe.h"
#include "vm.h"

/* Message tags used between Lua actors (C actors may use any others). */
enum {
    TR_LUA_TAG_VALUE = 0x4C554101u,  /* payload: one codec-encoded value */
    TR_LUA_TAG_WAKE  = 0x4C554102u,  /* payload: uint64 ref of a sleeping coroutine */
    TR_LUA_TAG_START = 0x4C554103u,  /* main actor: run the script's top level */
    TR_LUA_TAG_ERROR = 0x4C554104u   /* reply: the callee's handler failed; payload: text */
};

/* What a Lua actor is spawned from. Borrowed by tr_spawn's init (copied into the
 * actor), except `result`, written by the main actor when its script ends. */
typedef struct tr_lua_spawn {
    const char  *script;     /* file path, loaded as text */
    const char  *code;       /* or source text (troupe eval); script names it */
    const char  *args;       /* codec-encoded value, or NULL for nil */
    size_t       args_len;
    tr_lvm_opts  vm;
    int          main;       /* run the top level as the actor's work (troupe run) */
    char         err[512];   /* why init failed */
} tr_lua_spawn;

extern const tr_behaviour tr_lua_behaviour;

/* Spawns a Lua actor. On TR_EFAIL, req->err says why. */
int tr_lua_spawn_actor(tr_runtime *rt, tr_lua_spawn *req, const tr_spawn_opts *opts,
                       tr_pid *pid);

/* The outcome of a main actor (troupe run / eval / test): filled when it ends. */
typedef struct tr_lua_main_result {
    int  done, ok;
    int  keep_running;      /* the script asked to keep serving after it returned */
    int  print_results;     /* troupe eval: print what the chunk returns */
    int  stop_deadline_ms;
} tr_lua_main_result;
void tr_lua_main_watch(tr_lua_main_result *r);

/* For bindings: the actor running this Lua state, its context and runtime. */
typedef struct tr_lactor tr_lactor;
tr_lactor  *tr_lactor_of(lua_State *L);
tr_ctx     *tr_lactor_ctx(tr_lactor *la);
/* Suspends the calling coroutine until a message with ref resumes it (a reply, a
 * timeout, a wake-up); returns what lua_yield returns. Raises when the caller cannot
 * wait (not inside a coroutine the runtime runs). */
int tr_lactor_wait(lua_State *L, uint64_t ref);
/* The file the actor was spawned from (for relative paths). */
const char *tr_lactor_script(tr_lactor *la);

/* Exit reasons as Lua names ("normal", "shutdown", "killed", ...). */
const char *tr_lua_reason_name(int reason);
int tr_lua_reason_code(lua_State *L, int idx);

/* Registers the troupe.* C modules in package.preload (vm.c calls it). */
void tr_lua_preload(lua_State *L);
int luaopen_troupe_actor(lua_State *L);

#endif
