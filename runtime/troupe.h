/*
 * troupe.h — the public C API of the troupe actor runtime.
 *
 * The only header an embedder includes. Every type is opaque except tr_msg, whose
 * read-only fields a receive callback reads directly (a function call per field on
 * the hot path would cost more than the rest of a send). Fallible functions return
 * 0 or a negative TR_E* code; tr_strerror() names it.
 *
 * Threads: every function may be called from any thread unless its contract says
 * otherwise. Functions taking a tr_ctx may only be called from inside that actor's
 * own callbacks (init, receive, terminate).
 */
#ifndef TROUPE_H
#define TROUPE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TROUPE_VERSION_MAJOR 0
#define TROUPE_VERSION_MINOR 1
#define TROUPE_VERSION_PATCH 0
#define TROUPE_VERSION "0.1.0"

/* ---- errors ------------------------------------------------------------ */

#define TR_ERRNO_MAP(X)                                                        \
    X(ENOMEM,    -1, "out of memory")                                          \
    X(EINVAL,    -2, "invalid argument")                                       \
    X(ENOPROC,   -3, "no such actor (stale or unknown pid)")                   \
    X(EOVERLOAD, -4, "mailbox full")                                           \
    X(ETIMEDOUT, -5, "timed out")                                              \
    X(ESTOPPED,  -6, "runtime is stopping or stopped")                         \
    X(ELIMIT,    -7, "actor table full")                                       \
    X(EEXIT,     -8, "actor exited before replying")                           \
    X(ESYS,      -9, "system call failed")                                     \
    X(ESTATE,   -10, "call not allowed in this state or on this thread")       \
    X(EFAIL,    -11, "actor init failed")                                      \
    X(EEXIST,   -12, "name already registered")

typedef enum {
    TR_OK = 0,
#define TR__ERR_ENUM(name, code, text) TR_##name = code,
    TR_ERRNO_MAP(TR__ERR_ENUM)
#undef TR__ERR_ENUM
} tr_errno;

/* Returns a static message for a TR_E* code ("unknown error" for others). */
const char *tr_strerror(int err);
/* Returns the code's name without the TR_ prefix ("ENOMEM"), or "UNKNOWN". */
const char *tr_errname(int err);

/* ---- allocation -------------------------------------------------------- */

/* Every allocation of the runtime goes through these three. tr_malloc and tr_realloc
 * return NULL on failure (injected or real); the runtime turns that into TR_ENOMEM. */
void *tr_malloc(size_t size);
void *tr_realloc(void *ptr, size_t size);
void  tr_free(void *ptr);

/* Test hooks. tr_alloc_fail_after(n): on the calling thread only, the allocation after
 * the next n successful ones fails (n = 0: the very next); -1 disables. Returns how many
 * allocations are still to succeed (-1 when disabled) so a test can tell whether its
 * code reached the injected failure. tr_alloc_live() counts blocks allocated and not
 * yet freed, across all threads, since tr_alloc_track(1) was called. */
long tr_alloc_fail_after(long n);
long tr_alloc_pending(void);
void tr_alloc_track(int on);
long tr_alloc_live(void);

/* ---- identities -------------------------------------------------------- */

/* A pid: slot index (low 32 bits) + slot generation (high 32 bits). A pid whose slot
 * has been reused never reaches the new actor. 0 is never a valid pid. */
typedef uint64_t tr_pid;
#define TR_PID_NONE ((tr_pid)0)

typedef struct tr_runtime tr_runtime;
typedef struct tr_actor   tr_ctx;      /* an actor, seen from inside its callbacks */

/* ---- exit reasons ------------------------------------------------------ */

enum {
    TR_EXIT_NORMAL   = 0, /* linked actors ignore it unless they trap exits */
    TR_EXIT_SHUTDOWN = 1, /* orderly stop requested (supervisor, runtime stop) */
    TR_EXIT_KILL     = 2, /* sent with tr_kill: cannot be trapped; links see KILLED */
    TR_EXIT_KILLED   = 3, /* the reason of an actor that was sent KILL */
    TR_EXIT_ERROR    = 4, /* init or receive returned an error */
    TR_EXIT_NOPROC   = 5, /* linked or monitored a pid that was already gone */
    TR_EXIT_USER     = 100 /* first reason free for applications */
};

/* ---- messages ---------------------------------------------------------- */

typedef enum {
    TR_MSG_USER = 0,  /* tr_send; also what timers deliver */
    TR_MSG_CALL,      /* tr_call: answer with tr_reply (now or later, from saved from/ref) */
    TR_MSG_REPLY,     /* answer to this actor's tr_call; status < 0: callee gone (TR_EEXIT) */
    TR_MSG_TIMEOUT,   /* this actor's tr_call with this ref got no answer in time */
    TR_MSG_EXIT,      /* a linked actor exited (only seen when trapping exits) */
    TR_MSG_DOWN,      /* a monitored actor exited; ref = the monitor reference */
    TR__MSG_SYSTEM    /* kinds from here on are internal signals, never delivered */
} tr_msg_kind;

/* One allocation: header and payload. Fields are read-only for receivers. */
typedef struct tr_msg tr_msg;
struct tr_msg {
    tr_msg  *tr__next;        /* mailbox link: owned by the runtime */
    tr_pid   tr__to;          /* the incarnation it was sent to */
    tr_pid   from;            /* sender actor, or 0 from outside any actor */
    uint64_t ref;             /* call/monitor/timer reference, else 0 */
    uint8_t  kind;            /* tr_msg_kind */
    uint8_t  tr__flags;
    uint16_t tr__pool;        /* which pool the block returns to (runtime's) */
    int32_t  status;          /* EXIT/DOWN: reason; REPLY: 0 or a TR_E* code */
    uint32_t tag;             /* the application's message type */
    uint32_t size;            /* bytes in data[] */
    void    *ptr;             /* pointer payload (tr_send_ptr), else NULL */
    void   (*ptr_free)(void *ptr); /* called if the message is dropped undelivered */
    char     data[];          /* byte payload */
};

/* Allocates a message with room for size payload bytes (kind USER, tag 0). The caller
 * owns it until it passes it to tr_send_msg. NULL on out of memory. */
tr_msg *tr_msg_new(uint32_t tag, const void *data, size_t size);
/* Frees a message the caller owns (calls ptr_free for an undelivered pointer). */
void tr_msg_free(tr_msg *msg);

/* ---- behaviours -------------------------------------------------------- */

/*
 * A C behaviour. init runs synchronously inside tr_spawn, on the spawning thread,
 * before the actor can run a message; it stores its state in *state and returns 0, or
 * a negative code that makes tr_spawn fail with TR_EFAIL (TR_ENOMEM when init returned
 * TR_ENOMEM); nothing of the actor is left behind, and terminate does not run.
 * receive borrows msg (it is freed when receive returns, unless tr_msg_keep is
 * called); a negative return makes the actor exit with TR_EXIT_ERROR. terminate
 * runs once, on exit, with the reason, and owns the release of state. Any may be NULL.
 */
typedef struct tr_behaviour {
    const char *name;
    int  (*init)(tr_ctx *ctx, void *arg, void **state);
    int  (*receive)(tr_ctx *ctx, void *state, tr_msg *msg);
    void (*terminate)(tr_ctx *ctx, void *state, int reason);
} tr_behaviour;

typedef struct tr_spawn_opts {
    int      worker;       /* -1: floating (any worker runs it); else pinned to it */
    uint32_t max_mailbox;  /* 0: unbounded; else sends beyond it get TR_EOVERLOAD */
    tr_pid   link;         /* link to this pid before init runs (0: none) */
    int      trap_exit;    /* start trapping exits */
} tr_spawn_opts;

#define TR_SPAWN_OPTS_INIT { -1, 0, TR_PID_NONE, 0 }

/* ---- runtime ------------------------------------------------------------ */

typedef struct tr_config {
    int      workers;          /* worker threads; 0: number of online cores */
    uint32_t max_actors;       /* actor table capacity; 0: 16M */
    uint32_t turn_budget;      /* messages an actor handles per turn; 0: 128 */
} tr_config;

/* Fills *cfg with the defaults. */
void tr_config_init(tr_config *cfg);

/* Creates a runtime (not started). cfg may be NULL for defaults. Returns 0 and sets
 * *out, or TR_ENOMEM / TR_EINVAL / TR_ESYS with *out untouched. */
int tr_runtime_new(const tr_config *cfg, tr_runtime **out);

/* Starts the worker threads; returns at once (the runtime runs in the background).
 * Actors may be spawned before start: they run once it is called. The workers keep
 * the CPU budget of Lua code with SIGURG (runtime/lua/budget.c): troupe installs its
 * handler on the first Lua turn and unblocks SIGURG on its workers; the host program
 * must leave that handler in place (a SIGURG that is not troupe's goes on to the
 * handler installed before). */
int tr_runtime_start(tr_runtime *rt);

/*
 * Begins a graceful stop; callable from any thread, actors included; returns at once.
 * Every live actor gets an exit signal with reason TR_EXIT_SHUTDOWN, queued behind
 * the messages already in its mailbox: messages sent before the stop are delivered.
 * Actors that trap exits get it as a TR_MSG_EXIT and decide. When every actor has
 * exited, or deadline_ms passes (< 0: no deadline), the workers stop; actors still
 * alive then are terminated with TR_EXIT_KILLED and their pending messages dropped
 * and counted (tr_stats.dropped). New spawns fail with TR_ESTOPPED from now on.
 */
int tr_runtime_stop(tr_runtime *rt, int deadline_ms);

/* Blocks until the runtime has stopped (a stop must have been or be requested).
 * Not from a worker thread (TR_ESTATE). */
int tr_runtime_wait(tr_runtime *rt);

/* 0 while running, 1 once a stop was requested, 2 once its deadline has passed
 * (work still running then should give up: the Lua host's hook does). */
int tr_runtime_stopping(const tr_runtime *rt);

/* Starts the runtime and blocks until it stops: the foreground mode. */
int tr_runtime_run(tr_runtime *rt);

/* Stops (if running, with no deadline) and frees the runtime and everything in it. */
void tr_runtime_free(tr_runtime *rt);

int tr_runtime_workers(const tr_runtime *rt);

/* ---- extensions: modules built on the core (Lua chunk cache, HTTP, drivers) ---- */

/* Slots for per-runtime state of the modules layered on the core. */
enum { TR_EXT_LUA = 0, TR_EXT_HTTP = 1, TR_EXT_PG = 2, TR_EXT_REDIS = 3, TR_EXT_USER = 4,
       TR_EXT_MAX = 8 };

/* The state in slot (NULL when none). Any thread. */
void *tr_runtime_ext(tr_runtime *rt, int slot);
/* Sets slot to p once: 0, or TR_EEXIST when it was set already (the caller keeps p),
 * TR_EINVAL for a bad slot. free_fn(p) runs in tr_runtime_free after the workers
 * stopped and before their loops close, so it may uv_close handles of any loop.
 * Any thread. */
int tr_runtime_ext_set(tr_runtime *rt, int slot, void *p, void (*free_fn)(void *));

struct uv_loop_s;
/* The uv loop of worker i: only that worker's thread may use it while the runtime
 * runs (actors pinned to i do, from their callbacks). NULL for a bad index. */
struct uv_loop_s *tr_worker_loop(tr_runtime *rt, int i);
/* The index of the worker of rt running the calling thread, or -1. */
int tr_current_worker(const tr_runtime *rt);

typedef struct tr_stats {
    uint64_t actors_live;      /* spawned and not yet exited */
    uint64_t spawned;          /* since the runtime was created */
    uint64_t exited;
    uint64_t delivered;        /* messages handed to receive */
    uint64_t dropped;          /* messages discarded undelivered (dead target, stop) */
    uint64_t steals;           /* actors taken from another worker's queue */
    uint64_t turns;            /* actor turns run */
    uint64_t wakeups;          /* a sleeping worker woken */
    uint64_t timers;           /* timers armed (send_after/every, call timeouts) */
} tr_stats;

void tr_runtime_stats(tr_runtime *rt, tr_stats *out);

/* ---- actors -------------------------------------------------------------- */

/* Spawns an actor with behaviour b (borrowed: must outlive the actor) and init argument
 * arg. opts may be NULL. Returns 0 and sets *pid; TR_ENOMEM, TR_ELIMIT, TR_ESTOPPED,
 * TR_EINVAL (bad worker index), TR_ENOPROC (opts.link names a dead actor) or
 * TR_EFAIL (init failed) otherwise. */
int tr_spawn(tr_runtime *rt, const tr_behaviour *b, void *arg,
             const tr_spawn_opts *opts, tr_pid *pid);

/* Sends a copy of size bytes of data with tag. The sender (msg.from) is the actor
 * running on this thread, if any. 0, or TR_ENOPROC (stale pid), TR_EOVERLOAD,
 * TR_ENOMEM. A message in flight to an actor that exits is dropped and counted. */
int tr_send(tr_runtime *rt, tr_pid to, uint32_t tag, const void *data, size_t size);

/* Sends a pointer. On success ownership of ptr moves to the message: the receiver
 * owns it (or ptr_free is called if the message is dropped). On failure the caller
 * keeps ptr. */
int tr_send_ptr(tr_runtime *rt, tr_pid to, uint32_t tag, void *ptr,
                void (*ptr_free)(void *));

/* Sends a message built with tr_msg_new. Takes ownership of msg, also on failure. */
int tr_send_msg(tr_runtime *rt, tr_pid to, tr_msg *msg);

/* Sends an exit signal to pid, as if from a linked actor exiting with reason.
 * TR_EXIT_KILL cannot be trapped. 0 or TR_ENOPROC. */
int tr_kill(tr_runtime *rt, tr_pid pid, int reason);

/* 1 if pid names a live actor, else 0. It turns 0 as soon as the actor begins to
 * exit (sends fail from then on); its terminate and the notices to links and
 * monitors may still be under way: wait for those with a monitor, not with this. */
int tr_alive(tr_runtime *rt, tr_pid pid);

/* Calls to from outside any actor (embedders' threads): sends a TR_MSG_CALL and
 * blocks until the reply, which the caller then owns (*reply; tr_msg_free it).
 * TR_ETIMEDOUT after timeout_ms (< 0: no limit), TR_EEXIT if to exited first,
 * TR_ENOPROC, TR_ESTOPPED, TR_ESTATE on a worker thread. */
int tr_call_sync(tr_runtime *rt, tr_pid to, uint32_t tag, const void *data,
                 size_t size, int timeout_ms, tr_msg **reply);

/* ---- names -------------------------------------------------------------------- */

/* Registers name (copied) for the live actor pid; the name is released when pid
 * exits. 0, TR_EEXIST (the name is taken by a live actor), TR_ENOPROC, TR_EINVAL
 * (empty or over 255 bytes), TR_ENOMEM. */
int tr_register(tr_runtime *rt, const char *name, tr_pid pid);
/* Releases name. 0, or TR_ENOPROC when it was not registered. */
int tr_unregister(tr_runtime *rt, const char *name);
/* The live actor registered as name, or 0. */
tr_pid tr_whereis(tr_runtime *rt, const char *name);

/* ---- inside an actor (tr_ctx) ------------------------------------------------ */

tr_pid      tr_self(const tr_ctx *ctx);
tr_runtime *tr_ctx_runtime(const tr_ctx *ctx);
/* The worker running the actor now (floating actors may move between turns). */
int         tr_ctx_worker(const tr_ctx *ctx);

/* For an actor pinned to a worker that owns libuv handles: its handle callbacks run
 * on that worker between the actor's turns. tr_ctx_enter makes ctx the current actor
 * (the `from` of what is sent) until tr_ctx_leave(the returned value). An exit asked
 * for meanwhile (tr_exit) takes effect at tr_ctx_leave's next turn of the actor. */
tr_ctx *tr_ctx_enter(tr_ctx *ctx);
void    tr_ctx_leave(tr_ctx *ctx, tr_ctx *previous);

/* Makes the actor exit with reason when the current callback returns. */
void tr_exit(tr_ctx *ctx, int reason);

/* Keeps msg alive past receive: the caller owns it from now on (tr_msg_free or
 * tr_send_msg it). Only for the message receive was handed. */
void tr_msg_keep(tr_ctx *ctx, tr_msg *msg);

/* Sends a TR_MSG_CALL and returns at once with its reference in *ref. Exactly one
 * of these arrives later with that ref: TR_MSG_REPLY (status 0, or TR_EEXIT if the
 * callee exited without answering), or TR_MSG_TIMEOUT after timeout_ms (< 0: none). */
int tr_call(tr_ctx *ctx, tr_pid to, uint32_t tag, const void *data, size_t size,
            int timeout_ms, uint64_t *ref);

/* Answers a TR_MSG_CALL: to the caller request->from with request->ref. */
int tr_reply(tr_runtime *rt, const tr_msg *request, uint32_t tag,
             const void *data, size_t size);
/* Answers later, from a saved caller pid and ref. */
int tr_reply_to(tr_runtime *rt, tr_pid caller, uint64_t ref, uint32_t tag,
                const void *data, size_t size);

/* Answers a call with no payload and status (< 0: a TR_E* code the caller sees as
 * the REPLY's status, as when a callee exits with the call unanswered). */
int tr_reply_status_to(tr_runtime *rt, tr_pid caller, uint64_t ref, int status);

/* Links (both ways). Linking a dead pid delivers an exit signal with NOPROC. */
int tr_link(tr_ctx *ctx, tr_pid pid);
int tr_unlink(tr_ctx *ctx, tr_pid pid);
/* Exit signals become TR_MSG_EXIT messages while on (except KILL). */
void tr_trap_exit(tr_ctx *ctx, int on);

/* Monitors pid: one TR_MSG_DOWN with *ref arrives when it exits (reason NOPROC if it
 * already had). tr_demonitor cancels; no DOWN arrives for ref after it returns. */
int tr_monitor(tr_ctx *ctx, tr_pid pid, uint64_t *ref);
int tr_demonitor(tr_ctx *ctx, uint64_t ref);

/* ---- timers ---------------------------------------------------------------- */

/* Delivers a copy of (tag, data) to `to` as a TR_MSG_USER after ms milliseconds,
 * and, for tr_send_every, every ms after that, until cancelled or `to` is gone. *timer (may be NULL) identifies it
 * for tr_timer_cancel. The message's from is the actor that set the timer. */
int tr_send_after(tr_runtime *rt, tr_pid to, uint32_t tag, const void *data,
                  size_t size, uint64_t ms, uint64_t *timer);
int tr_send_every(tr_runtime *rt, tr_pid to, uint32_t tag, const void *data,
                  size_t size, uint64_t ms, uint64_t *timer);
/* Cancels a timer. A message already sent is not taken back. 0 or TR_ENOPROC when
 * the timer is unknown or finished (a one-shot that fired). */
int tr_timer_cancel(tr_runtime *rt, uint64_t timer);

/* ---- supervisors (actors/supervisor.c) --------------------------------------- */

typedef enum { TR_ONE_FOR_ONE, TR_ONE_FOR_ALL, TR_REST_FOR_ONE } tr_sup_strategy;
typedef enum {
    TR_PERMANENT, /* always restarted */
    TR_TRANSIENT, /* restarted if it exits with a reason other than NORMAL/SHUTDOWN */
    TR_TEMPORARY  /* never restarted */
} tr_restart;

typedef struct tr_child_spec {
    const char         *id;
    const tr_behaviour *behaviour;  /* spawned linked to the supervisor */
    void               *arg;        /* init argument, borrowed */
    tr_spawn_opts       opts;       /* link is set by the supervisor */
    tr_restart          restart;
    int                 shutdown_ms; /* wait for SHUTDOWN, then KILL; < 0: wait forever */
} tr_child_spec;

typedef struct tr_sup_spec {
    tr_sup_strategy      strategy;
    int                  intensity; /* restarts allowed ... */
    int                  period_ms; /* ... within this window; beyond: the supervisor
                                       stops its children and exits with SHUTDOWN */
    const tr_child_spec *children;  /* copied at spawn */
    int                  n_children;
    /* If set, the supervisor owns every child's arg from tr_supervisor_start on and
     * calls this once for each when it exits (or when tr_supervisor_start fails). */
    void               (*arg_free)(void *arg);
} tr_sup_spec;

/* Spawns a supervisor (trapping exits) that starts the children in order. Fails
 * (TR_EFAIL) if a child fails to start; children already started are stopped. */
int tr_supervisor_start(tr_runtime *rt, const tr_sup_spec *spec,
                        const tr_spawn_opts *opts, tr_pid *pid);
/* The current pid of child id, or 0 (asks the supervisor; any thread but its own). */
tr_pid tr_supervisor_child(tr_runtime *rt, tr_pid sup, const char *id);

/* ---- Lua: actors and HTTP apps (runtime/lua, runtime/http) ----------------------- */

/* The Lua VMs the runtime creates for a script: one per Lua actor, one per worker for
 * an HTTP app. Zero or NULL means the default. */
typedef struct tr_lua_config {
    size_t      mem_limit;   /* bytes per VM; 0: 64 MB (beyond: a Lua memory error) */
    uint64_t    budget_ms;   /* CPU per request or message; 0: 1000 (beyond: 503) */
    const char *lua_path;    /* package.path; NULL: tr_lua_default_path's */
    int         unsafe;      /* allow os.execute, io.*, C modules */
} tr_lua_config;

/* The package.path that finds the troupe framework (require "troupe.app") and the
 * modules next to the script: TROUPE_LUA_PATH first if set, then the framework's
 * directory, found from where libtroupe (or the program) was loaded: PREFIX/share/
 * troupe/lua when installed, scripts/ in the source tree; then script_dir (NULL: the
 * current directory). 0, or TR_EINVAL when out is too small. */
int tr_lua_default_path(char *out, size_t n, const char *script_dir);

/* Spawns a Lua actor from script (a file that returns a module: init(args) -> state,
 * handle(state, msg) -> reply, terminate(state, reason); see the README), as
 * actor.spawn does from Lua. opts may be NULL. 0, or TR_EFAIL with err giving the
 * file and line of a load or init error, TR_ENOMEM, TR_ESTOPPED, TR_EINVAL. */
int tr_spawn_lua(tr_runtime *rt, const char *script, const tr_lua_config *cfg,
                 const tr_spawn_opts *opts, tr_pid *pid, char *err, size_t errlen);

/* Sends a Lua actor the value of the JSON text json[0..len), as troupe.json.decode
 * gives it (objects and arrays become tables, null troupe.json.null): its
 * handle(state, msg) gets it. 0, or TR_EINVAL with err for invalid
 * JSON ("invalid JSON at byte 5: ..."), TR_ENOPROC, TR_ENOMEM, TR_ESTOPPED. */
int tr_lua_send_json(tr_runtime *rt, tr_pid to, const char *json, size_t len, char *err,
                     size_t errlen);

/* Calls a Lua actor with the value of the JSON text and waits (timeout_ms; < 0: no
 * limit) for what its handle returns, as JSON in *reply (NUL-terminated, tr_free it;
 * *reply_len may be NULL). From any thread but a worker's, like tr_call_sync. 0, or
 * TR_EFAIL with err holding the error the handler raised, TR_EINVAL (invalid JSON, or
 * a reply JSON cannot hold, such as a pid), TR_ETIMEDOUT, TR_EEXIT, TR_ENOPROC,
 * TR_ENOMEM, TR_ESTATE on a worker thread. */
int tr_lua_call_json(tr_runtime *rt, tr_pid to, const char *json, size_t len,
                     int timeout_ms, char **reply, size_t *reply_len, char *err,
                     size_t errlen);

typedef struct tr_http_config {
    const char   *host;              /* listen address; NULL: 127.0.0.1 */
    int           port;              /* 0: a free port (tr_http_port tells which) */
    const char   *script;            /* the app: a Lua file that returns
                                        require("troupe.app").new() with its routes */
    tr_lua_config lua;
    int           development;       /* error answers carry the Lua error and traceback */
    size_t        max_head;          /* request line + headers; 0: 16 KB (431 beyond) */
    size_t        body_limit;        /* default body limit; 0: 1 MB (413 beyond) */
    uint32_t      header_timeout_ms; /* 0: 10 s (408) */
    uint32_t      body_timeout_ms;   /* 0: 60 s (408) */
    uint32_t      idle_timeout_ms;   /* keep-alive; 0: 5 s */
    uint32_t      max_conns;         /* per worker; 0: 10,000 (accepting pauses) */
    uint32_t      drain_ms;          /* a replaced generation's requests may run this
                                        long; 0: 30 s (then they are cancelled) */
} tr_http_config;

/* Serves the app on a running runtime: binds the port on every worker (SO_REUSEPORT;
 * errors come back here, with err filled) and loads the script in a handler VM per
 * worker (a load error fails it too, err gives file and line). A request is handled
 * on the worker that accepted its connection. At most one server per runtime
 * (TR_EEXIST); no script or a bad port: TR_EINVAL. SIGPIPE is set to be ignored
 * unless the program has its own handler. */
int tr_http_start(tr_runtime *rt, const tr_http_config *cfg, char *err, size_t errlen);

/* The port actually bound (useful with port 0), or -1 when no server runs. */
int tr_http_port(tr_runtime *rt);

/* Hot reload: loads the app script again as a new generation in fresh handler VMs.
 * If any fails to load or its app:self_check() returns false, the new generation is
 * discarded, the old one keeps serving, and err says why. Else new requests go to
 * it while those in flight finish on theirs. Not from a worker thread. 0, TR_ESTATE
 * (no server), TR_EFAIL or TR_ENOMEM with err. *gen (may be NULL): the generation. */
int tr_http_reload(tr_runtime *rt, char *err, size_t errlen, uint64_t *gen);

/* Graceful shutdown, first step: stop accepting, close idle connections, let the
 * requests in flight finish (their connections close after the response). Returns
 * when no connection is left (0) or deadline_ms passed (TR_ETIMEDOUT). Then
 * tr_runtime_stop. Not from a worker thread. */
int tr_http_drain(tr_runtime *rt, int deadline_ms);

/* The server's status as a JSON object (generation, connections, requests in flight
 * per generation, reloads, the last reload error). Returns snprintf's count. */
int tr_http_status(tr_runtime *rt, char *out, size_t n);

#ifdef __cplusplus
}
#endif
#endif
