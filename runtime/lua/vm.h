/* vm.h — one Lua 5.4 state with a memory cap and a CPU budget (runtime/lua). */
#ifndef TR_LUA_VM_H
#define TR_LUA_VM_H

#include <stdbool.h>
#include <stdint.h>
#include <lua.h>

#include "troupe.h"

typedef struct tr__budget_slot tr__budget_slot;

typedef struct tr_lvm {
    lua_State *L;
    size_t     used;         /* bytes the state holds now */
    size_t     limit;        /* cap; allocations beyond it fail (a Lua memory error) */
    uint64_t   budget_ns;    /* CPU budget of one message or request */
    uint64_t   deadline;     /* tr_lvm_now_ns() time the current budget ends; 0: none */
    bool       expired;      /* the budget ran out: every hook call raises again */
    /* While a turn kept by the watchdog runs (budget.c): */
    tr__budget_slot *slot;   /* the thread's slot; NULL: the count hook keeps it */
    lua_State *volatile cur; /* the Lua thread running (the signal handler's target) */
    struct tr_lvm *outer;    /* the turn this one runs inside, on the same thread */
    bool       unsafe;       /* os.execute, io.popen and C modules allowed */
    uint8_t    lazy;         /* sandbox: standard libraries still to open on first use */
    uint64_t   child_budget_ms; /* what actors it spawns get by default */
    tr_runtime *rt;          /* past its stop deadline, running Lua is interrupted */
    void      **cache;       /* pooled: free lists of small blocks by size class */
    size_t      cached;      /* bytes in them */
} tr_lvm;

typedef struct tr_lvm_opts {
    size_t      mem_limit;     /* 0: 64 MB */
    uint64_t    budget_ms;     /* 0: 1000; UINT64_MAX: none */
    uint64_t    child_budget_ms; /* for the actors it spawns; 0: budget_ms */
    bool        unsafe;        /* allow os.execute, io.*, C modules */
    const char *lua_path;      /* package.path, or NULL for the default */
    bool        pooled;        /* keep freed small blocks for reuse (handler VMs: much
                                  short-lived garbage around a steady heap) */
} tr_lvm_opts;

/* Creates the state: counting allocator (through tr_realloc), the standard
 * libraries less what the sandbox removes (in a sandboxed state coroutine, table,
 * math, utf8, os and string open on first use), the troupe modules in package.preload,
 * and text-only loading. 0, TR_ENOMEM. The tr_lvm must not move afterwards (the
 * allocator and the hook hold its address). */
int  tr_lvm_init(tr_lvm *vm, const tr_lvm_opts *opts);
void tr_lvm_close(tr_lvm *vm);

/* Starts the CPU budget for work about to run on thread co (budget.c). */
void tr_lvm_arm(tr_lvm *vm, lua_State *co);
/* Ends it: co runs unmetered (between messages, or while suspended). */
void tr_lvm_disarm(tr_lvm *vm, lua_State *co);
/* Replaces resume and wrap in the coroutine library at lib with versions that keep
 * vm->cur on the coroutine they run (budget.c). */
void tr__lvm_track_coroutines(lua_State *L, int lib);

uint64_t tr_lvm_now_ns(void);

/* tr_lua_default_path for the directory of script (path.c): 0, or TR_EINVAL when
 * that directory or the path is too long. */
int tr__lua_script_path(char *out, size_t n, const char *script);

/* Registers the troupe.* C modules in package.preload (lactor.c). */
void tr_lua_preload(lua_State *L);

/* The tr_lvm of a state (any thread of it). */
tr_lvm *tr_lvm_of(lua_State *L);

/* The messages of the errors raised when the budget runs out, and when the runtime
 * passed its stop deadline. */
#define TR_LVM_BUDGET_MSG "CPU budget exceeded"
#define TR_LVM_STOPPED_MSG "interrupted: the runtime is stopping"

/* Loads a Lua source file as text and pushes the chunk; or returns a Lua error status
 * with the message pushed. A file that is not text fails. When the state has a runtime
 * (vm->rt), the compiled chunk may come from the runtime's cache of earlier
 * compilations of the same, unchanged file (chunks.h): the way actor scripts load.
 * Scripts' own loadfile, dofile and require always compile the text. */
int tr_lvm_loadfile(lua_State *L, const char *path);

#endif
