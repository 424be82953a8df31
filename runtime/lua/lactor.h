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
    TR_LUA_TAG_ERROR = 0x4C554104u,  /* reply: the callee's handler failed; payload: text */
    TR_LUA_TAG_CRESULT = 0x4C554105u,/* pointer payload: a tr_lactor_result (drivers) */
    TR_LUA_TAG_UPGRADE = 0x4C554106u /* payload: a script path, or empty: "if changed" */
};

/* What a Lua actor is spawned from. Borrowed by tr_spawn's init (copied into the
 * actor), except `result`, written by the main actor when its script ends. */
typedef struct tr_lactor tr_lactor;

/* What C code hosting a Lua VM in an actor (the HTTP server) hooks into its life. */
typedef struct tr_lua_host {
    /* On the actor's own worker thread, when it gets TR_LUA_TAG_START (the spawner
     * sends it): open handles on that worker's loop. Non-zero: the actor exits. */
    int  (*start)(tr_lactor *la, void *arg);
    /* In terminate, before the VM closes: close what start opened. */
    void (*stop)(tr_lactor *la, void *arg, int reason);
    /* A message from C with a tag that is none of TR_LUA_TAG_*: 1 if it took it. */
    int  (*message)(tr_lactor *la, void *arg, tr_msg *m);
    void *arg;
} tr_lua_host;

typedef struct tr_lua_spawn {
    const char  *script;     /* file path, loaded as text */
    const char  *code;       /* or source text (troupe eval); script names it */
    const char  *args;       /* codec-encoded value, or NULL for nil */
    size_t       args_len;
    tr_lvm_opts  vm;
    int          main;       /* run the top level as the actor's work (troupe run) */
    int          app;        /* the script returns an app table, kept as the module
                                (no init); needs host */
    const tr_lua_host *host; /* copied */
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
    /* When the main script returns an app (a table with a _serve method): called
     * on the main actor's thread with the script's path; 0 means it serves (the
     * runtime keeps running), else the run fails with err printed. */
    int  (*serve)(tr_runtime *rt, const char *script, char *err, size_t errlen);
} tr_lua_main_result;
void tr_lua_main_watch(tr_lua_main_result *r);

/* For bindings: the actor running this Lua state, its context and runtime. */
tr_lactor  *tr_lactor_of(lua_State *L);
lua_State  *tr_lactor_state(tr_lactor *la);
/* The module (app) table's registry reference. */
int         tr_lactor_module_ref(tr_lactor *la);

/* A job C code runs in a Lua actor's VM (an HTTP request), with its completion. */
typedef struct tr_lactor_job tr_lactor_job;
struct tr_lactor_job {
    /* The job's function returned (ok = 1; its n results at co[idx..]) or raised
     * (ok = 0; n = 1 and the error at co[idx]). Runs on the actor's thread. */
    void (*done)(tr_lactor_job *job, lua_State *co, int ok, int idx, int n);
};
/* Runs fn(args...) — pushed on la's main stack (fn first, nargs arguments after) by
 * the caller — in a pooled coroutine as a job: it may wait like a handler. Pops fn
 * and the args. Returns 0 (done will be called: before returning if the job does
 * not wait) or TR_ENOMEM (done is not called). The caller must run it protected
 * (inside lua_pcall on la's state) and, outside the actor's own turn, between
 * tr_ctx_enter and tr_ctx_leave. */
int tr_lactor_run(tr_lactor *la, int nargs, tr_lactor_job *job);
tr_ctx     *tr_lactor_ctx(tr_lactor *la);
/* Suspends the calling coroutine until a message with ref resumes it (a reply, a
 * timeout, a wake-up); returns what lua_yield returns. Raises when the caller cannot
 * wait (not inside a coroutine the runtime runs). */
int tr_lactor_wait(lua_State *L, uint64_t ref);
/*
 * For I/O drivers (Postgres, Redis, ...): a C operation whose completion resumes a
 * coroutine. The binding takes a ref (tr_lactor_new_ref), starts the operation, and
 * returns tr_lactor_wait(L, ref); the driver, when done (on any thread), fills a
 * tr_lactor_result with that ref and passes it to tr_lactor_complete.
 */
typedef struct tr_lactor_result tr_lactor_result;
struct tr_lactor_result {
    uint64_t ref;
    /* Pushes the values the coroutine resumes with on L (the actor's main state,
     * inside a protected call: it may raise a memory error) and returns how many. */
    int  (*push)(lua_State *L, tr_lactor_result *res);
    /* Frees res: after push, or when it can never be delivered. */
    void (*free)(tr_lactor_result *res);
};
uint64_t tr_lactor_new_ref(void);
/* Delivers res to actor pid (any thread). Takes ownership of res, also on failure
 * (TR_ENOPROC: the actor is gone; res was freed). If no coroutine waits for the ref
 * any more, res is freed unread. */
int tr_lactor_complete(tr_runtime *rt, tr_pid pid, tr_lactor_result *res);

/*
 * Hot code upgrade of Lua actors (not handler VMs, which reload by generation).
 * Every Lua actor spawned from a script file whose path is `script` (NULL: every
 * Lua actor whose file changed on disk since it was loaded) gets an upgrade
 * message: at that message boundary it loads the file again and, if the new module
 * has upgrade(old_state, old_version), makes its state from the old one (old_version
 * is the old module's `version` field). Its pid, mailbox, links and handlers in
 * flight are kept. If loading or upgrade fails, it keeps its code and state and the
 * failure is logged. Returns how many actors were asked.
 */
int tr_lua_upgrade_all(tr_runtime *rt, const char *script);

/* The file the actor was spawned from (for relative paths). */
const char *tr_lactor_script(tr_lactor *la);

/* Exit reasons as Lua names ("normal", "shutdown", "killed", ...). */
const char *tr_lua_reason_name(int reason);
int tr_lua_reason_code(lua_State *L, int idx);

/* Registers the troupe.* C modules in package.preload (vm.c calls it). */
void tr_lua_preload(lua_State *L);
int luaopen_troupe_actor(lua_State *L);
int luaopen_troupe_http(lua_State *L);   /* bindings/http.c */

#endif
