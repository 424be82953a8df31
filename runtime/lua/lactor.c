/*
 * lactor.c — Lua actors: a tr_behaviour whose state is a Lua VM.
 *
 * An actor script returns a table: init(args) -> state; handle(state, msg, from),
 * whose return value answers a call; terminate(state, reason). init runs inside
 * tr_spawn (it may not wait); every message runs in a pooled coroutine, so a handler
 * may wait (actor.call, actor.sleep): the coroutine yields and the message that
 * answers it (reply, timeout, wake-up) resumes it, while other messages go on.
 *
 * The coroutine body is C (continuations, no Lua instructions), so the CPU budget
 * hook never fires in it: when a handler's budget runs out, the body's protected
 * call gets the error and the coroutine is reused.
 */
#include <stdio.h>
#include <stdlib.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "lactor.h"

struct tr_lactor {
    tr_lvm       vm;            /* first: the allocator and hook find it by address */
    tr_ctx      *ctx;
    tr_runtime  *rt;
    char        *script;
    int          main;
    tr_lua_host  host;
    int          mod_ref, handle_ref, terminate_ref, state_ref, chunk_ref;
    int          idle_n;        /* coroutines in the pool table */
    int          waited;        /* set by tr_lactor_wait before it yields */
    lua_State   *running;       /* the coroutine being resumed now */
    tr_lactor_result *cres;     /* the driver result being delivered (freed after) */
    struct timespec mtime;      /* of the script when it was loaded */
    off_t        size;
};

/* Every live Lua actor spawned from a file (for upgrades), per process. */
typedef struct { tr_runtime *rt; tr_pid pid; char *script; } live_entry;
static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static live_entry *live;
static size_t n_live, cap_live;

static void live_add(tr_lactor *la)
{
    pthread_mutex_lock(&live_lock);
    if (n_live == cap_live) {
        size_t cap = cap_live ? cap_live * 2 : 64;
        live_entry *v = tr_realloc(live, cap * sizeof *v);
        if (v == NULL) {            /* this actor just cannot be upgraded in place */
            pthread_mutex_unlock(&live_lock);
            return;
        }
        live = v;
        cap_live = cap;
    }
    live[n_live++] = (live_entry){ la->rt, tr_self(la->ctx), la->script };
    pthread_mutex_unlock(&live_lock);
}

static void live_remove(tr_lactor *la)
{
    pthread_mutex_lock(&live_lock);
    tr_pid self = tr_self(la->ctx);
    for (size_t i = 0; i < n_live; i++)
        if (live[i].pid == self && live[i].rt == la->rt) {
            live[i] = live[--n_live];
            break;
        }
    if (n_live == 0) {              /* nothing left: give the memory back */
        tr_free(live);
        live = NULL;
        cap_live = 0;
    }
    pthread_mutex_unlock(&live_lock);
}

int tr_lua_upgrade_all(tr_runtime *rt, const char *script)
{
    tr_pid *pids = NULL;
    size_t n = 0;
    char want[PATH_MAX], have[PATH_MAX];
    if (script && realpath(script, want) == NULL)
        snprintf(want, sizeof want, "%s", script);
    pthread_mutex_lock(&live_lock);
    if (n_live)
        pids = tr_malloc(n_live * sizeof *pids);
    for (size_t i = 0; pids && i < n_live; i++) {
        if (live[i].rt != rt)
            continue;
        if (script && strcmp(live[i].script, script) != 0 &&
            (realpath(live[i].script, have) == NULL || strcmp(have, want) != 0))
            continue;
        pids[n++] = live[i].pid;
    }
    pthread_mutex_unlock(&live_lock);
    int sent = 0;
    size_t len = script ? strlen(script) : 0;
    for (size_t i = 0; i < n; i++)
        if (tr_send(rt, pids[i], TR_LUA_TAG_UPGRADE, script, len) == 0)
            sent++;
    tr_free(pids);
    return sent;
}

/* Registry keys. inflight[co] = {from, ref} of the call a coroutine is answering,
 * (ref; the caller in inflight_from), so that an actor that exits with handlers
 * suspended still answers their callers. */
static char lactor_key, pool_key, waiting_key, inflight_key, inflight_from_key, done_key;
static tr_lua_main_result *main_result;

void tr_lua_main_watch(tr_lua_main_result *r)
{
    main_result = r;
}

tr_lactor *tr_lactor_of(lua_State *L)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &lactor_key);
    tr_lactor *la = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return la;
}

tr_ctx *tr_lactor_ctx(tr_lactor *la) { return la->ctx; }
lua_State *tr_lactor_state(tr_lactor *la) { return la->vm.L; }
int tr_lactor_module_ref(tr_lactor *la) { return la->mod_ref; }
const char *tr_lactor_script(tr_lactor *la) { return la->script; }

/* ---- exit reasons ---- */

static const char *reason_names[] = { "normal", "shutdown", "kill", "killed", "error",
                                      "noproc" };

const char *tr_lua_reason_name(int reason)
{
    if (reason >= 0 && reason < (int)(sizeof reason_names / sizeof *reason_names))
        return reason_names[reason];
    return "error";
}

int tr_lua_reason_code(lua_State *L, int idx)
{
    if (lua_isnoneornil(L, idx))
        return TR_EXIT_NORMAL;
    if (lua_isinteger(L, idx))
        return (int)lua_tointeger(L, idx);
    const char *s = luaL_checkstring(L, idx);
    for (int i = 0; i < (int)(sizeof reason_names / sizeof *reason_names); i++)
        if (strcmp(s, reason_names[i]) == 0)
            return i;
    return TR_EXIT_ERROR;
}

/* ---- logging ---- */

static void log_error(tr_lactor *la, const char *what, const char *msg)
{
    tr_pid self = la->ctx ? tr_self(la->ctx) : 0;
    fprintf(stderr, "troupe: actor %u.%u (%s): %s: %s\n", (unsigned)self,
            (unsigned)(self >> 32), la->script, what, msg ? msg : "(no message)");
}

/* ---- the coroutine body ---- */

enum { BODY_WAIT_JOB = 1, BODY_CALLED = 2 };

static int msgh(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (msg == NULL)
        return 1;   /* a non-string error value travels as it is */
    luaL_traceback(L, L, msg, 1);
    return 1;
}

/*
 * Stack while a job runs: [1] from [2] ref [3] msgh [4] fn [5..] args.
 * A job ends with a yield of (DONE, from, ref, ok, results or error...).
 */
static int body_k(lua_State *co, int status, lua_KContext phase)
{
    if (phase == BODY_WAIT_JOB) {
        int n = lua_gettop(co);
        if (n < 3)
            return luaL_error(co, "troupe: bad job");
        lua_pushcfunction(co, msgh);
        lua_insert(co, 3);
        status = lua_pcallk(co, n - 3, LUA_MULTRET, 3, BODY_CALLED, body_k);
    }
    int ok = status == LUA_OK || status == LUA_YIELD;
    lua_remove(co, 3);
    lua_pushlightuserdata(co, &done_key);
    lua_insert(co, 1);
    lua_pushboolean(co, ok);
    lua_insert(co, 4);
    return lua_yieldk(co, lua_gettop(co), BODY_WAIT_JOB, body_k);
}

static int body(lua_State *co)
{
    return lua_yieldk(co, 0, BODY_WAIT_JOB, body_k);
}

/* Pushes an idle coroutine onto L (from the pool, or a new one). NULL on memory
 * error (nothing pushed). */
static lua_State *co_get(tr_lactor *la)
{
    lua_State *L = la->vm.L;
    if (la->idle_n > 0) {
        lua_rawgetp(L, LUA_REGISTRYINDEX, &pool_key);
        lua_rawgeti(L, -1, la->idle_n);
        lua_pushnil(L);
        lua_rawseti(L, -3, la->idle_n--);
        lua_remove(L, -2);
        return lua_tothread(L, -1);
    }
    if (!lua_checkstack(L, 4))
        return NULL;
    lua_State *co = lua_newthread(L);
    lua_pushcfunction(co, body);
    int nres;
    if (lua_resume(co, L, 0, &nres) != LUA_YIELD) {
        lua_pop(L, 1);
        return NULL;
    }
    return co;
}

/* Returns the coroutine on top of L to the pool (pops it). */
static void co_put(tr_lactor *la)
{
    lua_State *L = la->vm.L;
    if (la->idle_n >= 64) {     /* enough idle ones: let the GC take it */
        lua_pop(L, 1);
        return;
    }
    lua_rawgetp(L, LUA_REGISTRYINDEX, &pool_key);
    lua_insert(L, -2);
    lua_rawseti(L, -2, ++la->idle_n);
    lua_pop(L, 1);
}

static void send_reply(tr_lactor *la, lua_State *co, tr_pid to, uint64_t ref, int ok,
                       int idx, int nvals)
{
    tr_buf b = { 0 };
    const char *err = NULL;
    int rc;
    if (ok) {
        if (nvals == 0) {
            lua_pushnil(co);
            rc = tr_codec_encode(co, -1, &b, &err);
            lua_pop(co, 1);
        } else {
            rc = tr_codec_encode(co, idx, &b, &err);
        }
        if (rc == 0) {
            tr_reply_to(la->rt, to, ref, TR_LUA_TAG_VALUE, b.data, b.len);
            tr_buf_free(&b);
            return;
        }
        err = rc == TR_ENOMEM ? "out of memory" : err;
    } else {
        err = nvals ? lua_tostring(co, idx) : NULL;
        if (err == NULL)
            err = "error in handler";
    }
    /* The caller gets the message; the traceback is for the log. */
    const char *tb = strstr(err, "\nstack traceback:");
    tr_reply_to(la->rt, to, ref, TR_LUA_TAG_ERROR, err, tb ? (size_t)(tb - err) : strlen(err));
    tr_buf_free(&b);
}

static void job_finished(tr_lactor *la, lua_State *co, int nres);
static int ref_field(lua_State *L, int mod, const char *name);

/* Records (from, ref) as the call co answers: inflight[co] = ref and
 * inflight_from[co] = from (pooled coroutines are reused keys: no allocation once
 * warm). */
static void inflight_set(tr_lactor *la, lua_State *co, tr_pid from, uint64_t ref)
{
    lua_State *L = la->vm.L;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &inflight_key);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &inflight_from_key);
    lua_pushthread(co);
    lua_xmove(co, L, 1);
    lua_pushvalue(L, -1);
    lua_pushinteger(L, (lua_Integer)from);
    lua_rawset(L, -4);
    lua_pushinteger(L, (lua_Integer)ref);
    lua_rawset(L, -4);
    lua_pop(L, 2);
}

/* Forgets co's call; if status < 0, answers its caller with it first. */
static void inflight_answer(tr_lactor *la, lua_State *co, int status)
{
    lua_State *L = la->vm.L;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &inflight_key);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &inflight_from_key);
    lua_pushthread(co);
    lua_xmove(co, L, 1);                              /* refs froms co */
    if (status < 0) {
        lua_pushvalue(L, -1);
        lua_rawget(L, -4);
        lua_pushvalue(L, -2);
        lua_rawget(L, -4);                            /* refs froms co ref from */
        if (lua_isinteger(L, -2))
            tr_reply_status_to(la->rt, (tr_pid)lua_tointeger(L, -1),
                               (uint64_t)lua_tointeger(L, -2), status);
        lua_pop(L, 2);
    }
    lua_pushvalue(L, -1);
    lua_pushnil(L);
    lua_rawset(L, -5);
    lua_pushnil(L);
    lua_rawset(L, -3);
    lua_pop(L, 2);
}

/* The main script's top level returned (or failed): print what `troupe eval` asked
 * for, record the outcome, and stop the runtime unless the script serves on. */
static void main_finished(tr_lactor *la, lua_State *co, int ok, int idx, int nvals)
{
    tr_lua_main_result *r = main_result;
    if (r && r->print_results && ok)
        for (int i = 0; i < nvals; i++) {
            const char *s = luaL_tolstring(co, idx + i, NULL);
            printf("%s%s", i ? "\t" : "", s);
            lua_pop(co, 1);
            if (i == nvals - 1)
                printf("\n");
        }
    fflush(stdout);
    if (r && ok && nvals >= 1 && r->serve && !r->print_results && lua_istable(co, idx)) {
        int is_app = lua_getfield(co, idx, "_serve") == LUA_TFUNCTION;
        lua_pop(co, 1);
        if (is_app) {
            char err[512] = "";
            if (r->serve(la->rt, la->script, err, sizeof err) == 0) {
                r->keep_running = 1;
            } else {
                fprintf(stderr, "troupe: %s\n", err);
                ok = 0;
            }
        }
    }
    if (r) {
        r->ok = ok;
        r->done = 1;
    }
    tr_exit(la->ctx, ok ? TR_EXIT_NORMAL : TR_EXIT_ERROR);
    if (r == NULL || !r->keep_running)
        tr_runtime_stop(la->rt, r ? r->stop_deadline_ms : 5000);
}

/* Resumes co (on top of L) with nargs values already on co's stack, and deals with
 * how it stops: finished (back to the pool), waiting (kept by the waiting table), or
 * broken (dropped). Pops co from L. */
static void drive(tr_lactor *la, lua_State *co, int nargs)
{
    lua_State *L = la->vm.L;
    for (;;) {
        la->waited = 0;
        la->running = co;
        tr_lvm_arm(&la->vm, co);
        int nres = 0;
        int st = lua_resume(co, L, nargs, &nres);
        tr_lvm_disarm(&la->vm, co);
        la->running = NULL;
        if (st == LUA_YIELD && nres >= 4 && lua_touserdata(co, -nres) == &done_key) {
            job_finished(la, co, nres);
            return;
        }
        if (st == LUA_YIELD && la->waited) {
            lua_pop(co, nres);
            lua_pop(L, 1);
            return;
        }
        if (st == LUA_YIELD) {
            /* coroutine.yield straight from a handler: nothing will resume it. */
            log_error(la, "warning", "coroutine.yield in a handler returns at once");
            lua_pop(co, nres);
            nargs = 0;
            continue;
        }
        log_error(la, "internal error", lua_tostring(co, -1));
        if (lua_islightuserdata(co, 1) && lua_touserdata(co, 1) != &done_key) {
            /* a C job still expects its end */
            tr_lactor_job *job = lua_touserdata(co, 1);
            job->done(job, co, 0, lua_gettop(co), 1);
        }
        inflight_answer(la, co, TR_EEXIT);
        lua_pop(L, 1);
        return;
    }
}

static void job_finished(tr_lactor *la, lua_State *co, int nres)
{
    int base = lua_gettop(co) - nres + 1;       /* DONE */
    if (lua_islightuserdata(co, base + 1)) {    /* a C job: from is the job */
        tr_lactor_job *job = lua_touserdata(co, base + 1);
        int ok = lua_toboolean(co, base + 3);
        job->done(job, co, ok, base + 4, nres - 4);
        lua_settop(co, 0);
        co_put(la);
        return;
    }
    tr_pid from = (tr_pid)lua_tointeger(co, base + 1);
    uint64_t ref = (uint64_t)lua_tointeger(co, base + 2);
    int ok = lua_toboolean(co, base + 3);
    int nvals = nres - 4;
    if (ref) {
        send_reply(la, co, from, ref, ok, base + 4, nvals);
        inflight_answer(la, co, 0);
    }
    if (!ok)
        log_error(la, "error", nvals ? luaL_tolstring(co, base + 4, NULL) : NULL);
    if (la->main && ref == 0 && from == tr_self(la->ctx))
        main_finished(la, co, ok, base + 4, nvals);
    lua_settop(co, 0);
    co_put(la);
}

/* Runs fn (pushed on L before calling, with nargs arguments after it) as a job.
 * from/ref: the caller to answer, for calls. */
static void start_job(tr_lactor *la, int nargs, tr_pid from, uint64_t ref)
{
    lua_State *L = la->vm.L;
    lua_State *co = co_get(la);
    if (co == NULL) {
        lua_pop(L, nargs + 1);
        log_error(la, "error", "out of memory starting a handler");
        if (ref)
            tr_reply_to(la->rt, from, ref, TR_LUA_TAG_ERROR, "out of memory", 13);
        return;
    }
    lua_insert(L, -(nargs + 2));                /* co fn args... */
    if (ref)
        inflight_set(la, co, from, ref);
    lua_pushinteger(co, (lua_Integer)from);
    lua_pushinteger(co, (lua_Integer)ref);
    lua_xmove(L, co, nargs + 1);                /* co: from ref fn args... */
    drive(la, co, nargs + 3);
}

uint64_t tr_lactor_new_ref(void)
{
    static _Atomic uint64_t refs;
    return (1ull << 61) | atomic_fetch_add_explicit(&refs, 1, memory_order_relaxed);
}

static void cres_free(void *p)
{
    tr_lactor_result *res = p;
    res->free(res);
}

int tr_lactor_complete(tr_runtime *rt, tr_pid pid, tr_lactor_result *res)
{
    int rc = tr_send_ptr(rt, pid, TR_LUA_TAG_CRESULT, res, cres_free);
    if (rc < 0)
        res->free(res);
    return rc;
}

int tr_lactor_run(tr_lactor *la, int nargs, tr_lactor_job *job)
{
    lua_State *L = la->vm.L;
    lua_State *co = co_get(la);
    if (co == NULL) {
        lua_pop(L, nargs + 1);
        return TR_ENOMEM;
    }
    lua_insert(L, -(nargs + 2));                /* co fn args... */
    lua_pushlightuserdata(co, job);
    lua_pushinteger(co, 0);
    lua_xmove(L, co, nargs + 1);                /* co: job 0 fn args... */
    drive(la, co, nargs + 3);
    return 0;
}

int tr_lactor_wait(lua_State *L, uint64_t ref)
{
    tr_lactor *la = tr_lactor_of(L);
    if (la == NULL || L != la->running || !lua_isyieldable(L))
        return luaL_error(L, "troupe: cannot wait here (only in a handler or the main "
                             "script itself: not in init, terminate, or a coroutine "
                             "the script created)");
    lua_rawgetp(L, LUA_REGISTRYINDEX, &waiting_key);
    lua_pushthread(L);
    lua_rawseti(L, -2, (lua_Integer)ref);
    lua_pop(L, 1);
    la->waited = 1;
    return lua_yield(L, 0);
}

/* Takes the coroutine waiting for ref out of the waiting table and pushes it on L.
 * NULL (nothing pushed) when none waits. */
static lua_State *take_waiter(tr_lactor *la, uint64_t ref)
{
    lua_State *L = la->vm.L;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &waiting_key);
    if (lua_rawgeti(L, -1, (lua_Integer)ref) != LUA_TTHREAD) {
        lua_pop(L, 2);
        return NULL;
    }
    lua_pushnil(L);
    lua_rawseti(L, -3, (lua_Integer)ref);
    lua_remove(L, -2);
    return lua_tothread(L, -1);
}

/* Pushes the message's value on L: the decoded Lua value, or {tag=, data=} for a
 * message from C. 0, or -1 with an error message pushed instead. */
static int push_payload(tr_lactor *la, tr_msg *m)
{
    lua_State *L = la->vm.L;
    if (m->tag == TR_LUA_TAG_VALUE) {
        /* Runs inside receive_body's protected call: a memory error raises there. */
        const char *err = NULL;
        if (tr_codec_decode(L, m->data, m->size, &err) == 0)
            return 0;
        lua_pushstring(L, err);
        return -1;
    }
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, m->tag);
    lua_setfield(L, -2, "tag");
    lua_pushlstring(L, m->data, m->size);
    lua_setfield(L, -2, "data");
    return 0;
}

static void push_pid_or_nil(lua_State *L, tr_pid pid)
{
    if (pid)
        tr_codec_pushpid(L, pid);
    else
        lua_pushnil(L);
}

/* A reply, timeout or wake-up for a waiting coroutine. */
static void resume_waiter(tr_lactor *la, tr_msg *m)
{
    lua_State *L = la->vm.L;
    uint64_t ref = m->ref;
    if (m->kind == TR_MSG_USER)          /* TR_LUA_TAG_WAKE: the ref is the payload */
        memcpy(&ref, m->data, sizeof ref);
    lua_State *co = take_waiter(la, ref);
    if (co == NULL)
        return;
    int n;
    if (m->kind == TR_MSG_USER) {
        n = 0;
    } else if (m->kind == TR_MSG_TIMEOUT) {
        lua_pushnil(co);
        lua_pushliteral(co, "timeout");
        n = 2;
    } else if (m->status < 0) {
        lua_pushnil(co);
        lua_pushstring(co, m->status == TR_EEXIT ? "exited" : tr_strerror(m->status));
        n = 2;
    } else if (m->tag == TR_LUA_TAG_ERROR) {
        lua_pushnil(co);
        lua_pushlstring(co, m->data, m->size);
        n = 2;
    } else if (push_payload(la, m) == 0) {
        lua_xmove(L, co, 1);
        n = 1;
    } else {
        lua_pushnil(co);
        lua_xmove(L, co, 1);
        n = 2;
    }
    drive(la, co, n);
}

static int file_stat(const char *path, struct timespec *mtime, off_t *size)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return -1;
    *mtime = st.st_mtim;
    *size = st.st_size;
    return 0;
}

/* Protected: loads the script again and makes the new state. Stack in: la.
 * Leaves: new module, new state. */
static int upgrade_protected(lua_State *L)
{
    tr_lactor *la = lua_touserdata(L, 1);
    lua_settop(L, 0);
    if (tr_lvm_loadfile(L, la->script) != LUA_OK)
        return lua_error(L);
    lua_call(L, 0, 1);
    if (!lua_istable(L, -1))
        return luaL_error(L, "an actor script must return a table (got %s)",
                          luaL_typename(L, -1));
    int mod = lua_gettop(L);
    if (lua_getfield(L, mod, "upgrade") == LUA_TFUNCTION) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, la->state_ref);
        lua_rawgeti(L, LUA_REGISTRYINDEX, la->mod_ref);
        lua_getfield(L, -1, "version");
        lua_remove(L, -2);                        /* mod upgrade old_state old_version */
        lua_call(L, 2, 1);
    } else {
        lua_pop(L, 1);
        lua_rawgeti(L, LUA_REGISTRYINDEX, la->state_ref);   /* the state as it is */
    }
    return 2;
}

/* At a message boundary: the new code takes over, or nothing changes. */
static void upgrade(tr_lactor *la, int forced)
{
    lua_State *L = la->vm.L;
    struct timespec mtime;
    off_t size;
    if (file_stat(la->script, &mtime, &size) != 0) {
        log_error(la, "upgrade failed", "cannot read the script; keeping the running code");
        return;
    }
    if (!forced && mtime.tv_sec == la->mtime.tv_sec && mtime.tv_nsec == la->mtime.tv_nsec &&
        size == la->size)
        return;                     /* unchanged on disk */
    lua_settop(L, 0);
    lua_pushcfunction(L, msgh);
    lua_pushcfunction(L, upgrade_protected);
    lua_pushlightuserdata(L, la);
    tr_lvm_arm(&la->vm, L);
    int st = lua_pcall(L, 1, 2, 1);
    tr_lvm_disarm(&la->vm, L);
    if (st != LUA_OK) {
        char why[600];
        const char *msg = lua_tostring(L, -1);
        const char *tb = msg ? strstr(msg, "\nstack traceback:") : NULL;
        snprintf(why, sizeof why, "%.*s; keeping the running code",
                 tb ? (int)(tb - msg) : 500, msg ? msg : "error");
        log_error(la, "upgrade failed", why);
        lua_settop(L, 0);
        return;
    }
    /* stack: msgh mod state */
    int new_handle = ref_field(L, 2, "handle");
    int new_terminate = ref_field(L, 2, "terminate");
    luaL_unref(L, LUA_REGISTRYINDEX, la->handle_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, la->terminate_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, la->state_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, la->mod_ref);
    la->handle_ref = new_handle;
    la->terminate_ref = new_terminate;
    la->state_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    la->mod_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    la->mtime = mtime;
    la->size = size;
    lua_settop(L, 0);
    fprintf(stderr, "troupe: actor %u.%u (%s): upgraded\n", (unsigned)tr_self(la->ctx),
            (unsigned)(tr_self(la->ctx) >> 32), la->script);
}

static int receive_body(lua_State *L)
{
    tr_lactor *la = lua_touserdata(L, 1);
    tr_msg *m = lua_touserdata(L, 2);
    tr_ctx *ctx = la->ctx;
    lua_settop(L, 0);
    switch (m->kind) {
    case TR_MSG_REPLY:
    case TR_MSG_TIMEOUT:
        resume_waiter(la, m);
        return 0;
    case TR_MSG_USER:
        if (m->tag == TR_LUA_TAG_WAKE && m->from == tr_self(ctx) && m->size == 8) {
            resume_waiter(la, m);
            return 0;
        }
        if (m->tag == TR_LUA_TAG_UPGRADE && !la->main && la->host.start == NULL) {
            upgrade(la, m->size > 0);
            return 0;
        }
        if (m->tag == TR_LUA_TAG_CRESULT && m->ptr) {
            tr_lactor_result *res = m->ptr;
            la->cres = res;                     /* lua_receive frees it, whatever happens */
            lua_State *co = take_waiter(la, res->ref);
            if (co == NULL)
                return 0;
            int n = res->push(L, res);
            lua_xmove(L, co, n);
            drive(la, co, n);
            return 0;
        }
        if (la->host.message && (m->tag < TR_LUA_TAG_VALUE || m->tag > TR_LUA_TAG_CRESULT) &&
            la->host.message(la, la->host.arg, m))
            return 0;
        if (m->tag == TR_LUA_TAG_START && la->host.start) {
            if (la->host.start(la, la->host.arg) != 0)
                tr_exit(ctx, TR_EXIT_ERROR);
            return 0;
        }
        if (m->tag == TR_LUA_TAG_START && la->main) {
            /* The top level gets the script's arguments as ... and in arg. */
            lua_rawgeti(L, LUA_REGISTRYINDEX, la->chunk_ref);
            int n = 0;
            if (lua_rawgeti(L, LUA_REGISTRYINDEX, la->state_ref) == LUA_TTABLE &&
                lua_checkstack(L, (int)luaL_len(L, -1) + 2)) {
                lua_pushvalue(L, -1);
                lua_setglobal(L, "arg");
                int args = lua_gettop(L);
                n = (int)luaL_len(L, args);
                for (int i = 1; i <= n; i++)
                    lua_rawgeti(L, args, i);
                lua_remove(L, args);
            } else {
                lua_pop(L, 1);
            }
            start_job(la, n, tr_self(ctx), 0);
            return 0;
        }
        break;
    case TR_MSG_CALL:
        break;
    case TR_MSG_EXIT:
    case TR_MSG_DOWN:
        if (la->handle_ref == LUA_NOREF)
            return 0;
        lua_rawgeti(L, LUA_REGISTRYINDEX, la->handle_ref);
        lua_rawgeti(L, LUA_REGISTRYINDEX, la->state_ref);
        lua_createtable(L, 0, 4);
        lua_pushstring(L, m->kind == TR_MSG_EXIT ? "exit" : "down");
        lua_setfield(L, -2, "type");
        push_pid_or_nil(L, m->from);
        lua_setfield(L, -2, "from");
        lua_pushstring(L, tr_lua_reason_name(m->status));
        lua_setfield(L, -2, "reason");
        if (m->kind == TR_MSG_DOWN) {
            lua_pushinteger(L, (lua_Integer)m->ref);
            lua_setfield(L, -2, "ref");
        }
        push_pid_or_nil(L, m->from);
        start_job(la, 3, 0, 0);
        return 0;
    default:
        return 0;
    }
    if (la->handle_ref == LUA_NOREF) {
        if (m->kind == TR_MSG_CALL)
            tr_reply_to(la->rt, m->from, m->ref, TR_LUA_TAG_ERROR, "no handler", 10);
        return 0;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, la->handle_ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, la->state_ref);
    if (push_payload(la, m) < 0) {
        const char *why = lua_pushfstring(L, "bad message: %s", lua_tostring(L, -1));
        log_error(la, "error", why);
        if (m->kind == TR_MSG_CALL)
            tr_reply_to(la->rt, m->from, m->ref, TR_LUA_TAG_ERROR, why, strlen(why));
        lua_pop(L, 4);
        return 0;
    }
    push_pid_or_nil(L, m->from);
    start_job(la, 3, m->from, m->kind == TR_MSG_CALL ? m->ref : 0);
    return 0;
}

/* Everything receive does with the state runs protected: an allocation failing at
 * the VM's memory cap is an error for this message, never a Lua panic. */
static int lua_receive(tr_ctx *ctx, void *state, tr_msg *m)
{
    (void)ctx;
    tr_lactor *la = state;
    lua_State *L = la->vm.L;
    lua_settop(L, 0);
    if (!lua_checkstack(L, 8)) {
        log_error(la, "error", "out of memory");
        return 0;
    }
    lua_pushcfunction(L, receive_body);
    lua_pushlightuserdata(L, la);
    lua_pushlightuserdata(L, m);
    if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
        const char *why = lua_tostring(L, -1);
        log_error(la, "error", why);
        if (m->kind == TR_MSG_CALL)
            tr_reply_to(la->rt, m->from, m->ref, TR_LUA_TAG_ERROR, "not enough memory", 17);
    }
    if (la->cres) {
        la->cres->free(la->cres);
        la->cres = NULL;
    }
    lua_settop(L, 0);
    return 0;
}

/* ---- init and terminate ---- */

static int ref_field(lua_State *L, int mod, const char *name)
{
    if (lua_getfield(L, mod, name) != LUA_TFUNCTION) {
        lua_pop(L, 1);
        return LUA_NOREF;
    }
    return luaL_ref(L, LUA_REGISTRYINDEX);
}

/* Protected: loads the script, decodes args, runs init. Stack in: req. */
static int lua_init_protected(lua_State *L)
{
    tr_lua_spawn *req = lua_touserdata(L, 1);
    tr_lactor *la = tr_lactor_of(L);
    int st = req->code ? luaL_loadbufferx(L, req->code, strlen(req->code), req->script, "t")
                       : tr_lvm_loadfile(L, req->script);
    if (st != LUA_OK)
        return lua_error(L);
    lua_newtable(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &pool_key);
    lua_newtable(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &waiting_key);
    lua_newtable(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &inflight_key);
    lua_newtable(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &inflight_from_key);
    if (req->args) {
        const char *err = NULL;
        if (tr_codec_decode(L, req->args, req->args_len, &err) < 0)
            return luaL_error(L, "bad spawn arguments: %s", err);
    } else {
        lua_pushnil(L);
    }                                             /* req chunk args */
    if (req->main) {
        la->state_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        la->chunk_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        return 0;
    }
    lua_insert(L, -2);                            /* req args chunk */
    if (req->app) {
        lua_pushliteral(L, "handler");            /* ... tells the script where it runs */
        lua_call(L, 1, 1);                        /* req args app */
        if (!lua_istable(L, -1) || lua_getfield(L, -1, "_serve") != LUA_TFUNCTION)
            return luaL_error(L, "%s: the script must return an app (require('troupe.app')"
                                 ".new()), got %s", req->script, luaL_typename(L, -2));
        lua_pop(L, 1);
        /* An app may check itself before it takes requests (hot reload refuses a
         * generation whose check fails). */
        if (lua_getfield(L, -1, "self_check") == LUA_TFUNCTION) {
            lua_pushvalue(L, -2);
            lua_call(L, 1, 2);
            if (lua_type(L, -2) == LUA_TBOOLEAN && !lua_toboolean(L, -2))
                return luaL_error(L, "%s: self_check failed%s%s", req->script,
                                  lua_isstring(L, -1) ? ": " : "",
                                  lua_isstring(L, -1) ? lua_tostring(L, -1) : "");
            lua_pop(L, 2);
        } else {
            lua_pop(L, 1);
        }
        la->mod_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        lua_pop(L, 1);
        lua_newtable(L);
        la->state_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        /* A handler VM makes short-lived garbage per request around a long-lived
         * app: the generational collector's case. */
        if (getenv("TROUPE_GC_INC") == NULL)
            lua_gc(L, LUA_GCGEN, 0, 0);
        return 0;
    }
    lua_call(L, 0, 1);                            /* req args mod */
    if (!lua_istable(L, -1))
        return luaL_error(L, "an actor script must return a table (got %s)",
                          luaL_typename(L, -1));
    int mod = lua_gettop(L);
    la->handle_ref = ref_field(L, mod, "handle");
    la->terminate_ref = ref_field(L, mod, "terminate");
    if (lua_getfield(L, mod, "init") == LUA_TFUNCTION) {
        lua_pushvalue(L, mod - 1);
        lua_call(L, 1, 1);
    } else {
        lua_pop(L, 1);
        lua_newtable(L);                          /* no init: state = {} */
    }
    la->state_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    la->mod_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

static void lactor_free(tr_lactor *la)
{
    tr_lvm_close(&la->vm);
    tr_free(la->script);
    tr_free(la);
}

static int lua_init(tr_ctx *ctx, void *arg, void **state)
{
    tr_lua_spawn *req = arg;
    tr_lactor *la = tr_malloc(sizeof(*la));
    if (la == NULL)
        return TR_ENOMEM;
    memset(la, 0, sizeof(*la));
    la->ctx = ctx;
    la->rt = tr_ctx_runtime(ctx);
    la->main = req->main;
    if (req->host)
        la->host = *req->host;
    la->mod_ref = la->handle_ref = la->terminate_ref = la->state_ref = la->chunk_ref =
        LUA_NOREF;
    size_t len = strlen(req->script);
    la->script = tr_malloc(len + 1);
    if (la->script == NULL || tr_lvm_init(&la->vm, &req->vm) < 0) {
        tr_free(la->script);
        tr_free(la);
        snprintf(req->err, sizeof req->err, "out of memory");
        return TR_ENOMEM;
    }
    memcpy(la->script, req->script, len + 1);
    la->vm.rt = la->rt;
    lua_State *L = la->vm.L;
    lua_pushlightuserdata(L, la);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &lactor_key);
    lua_pushcfunction(L, msgh);
    lua_pushcfunction(L, lua_init_protected);
    lua_pushlightuserdata(L, req);
    tr_lvm_arm(&la->vm, L);
    int st = lua_pcall(L, 1, 0, 1);
    tr_lvm_disarm(&la->vm, L);
    if (st != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        const char *tb = msg ? strstr(msg, "\nstack traceback:") : NULL;
        snprintf(req->err, sizeof req->err, "%.*s", tb ? (int)(tb - msg) : 500,
                 msg ? msg : "error in init");
        lactor_free(la);
        return st == LUA_ERRMEM ? TR_ENOMEM : TR_EFAIL;
    }
    lua_settop(L, 0);
    if (req->code == NULL && !req->main && !req->app &&
        file_stat(la->script, &la->mtime, &la->size) == 0)
        live_add(la);
    *state = la;
    return 0;
}

/* Answers TR_EEXIT to the callers of every handler still suspended. */
static void answer_inflight(tr_lactor *la)
{
    lua_State *L = la->vm.L;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &inflight_key);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &inflight_from_key);
    lua_pushnil(L);
    while (lua_next(L, -3)) {                          /* refs froms co ref */
        lua_pushvalue(L, -2);
        lua_rawget(L, -4);                             /* refs froms co ref from */
        tr_reply_status_to(la->rt, (tr_pid)lua_tointeger(L, -1),
                           (uint64_t)lua_tointeger(L, -2), TR_EEXIT);
        lua_pop(L, 2);
    }
    lua_pop(L, 2);
}

/* Protected: calls the script's terminate(state, reason). */
static int terminate_body(lua_State *L)
{
    tr_lactor *la = lua_touserdata(L, 1);
    const char *reason = lua_touserdata(L, 2);
    lua_settop(L, 0);
    lua_rawgeti(L, LUA_REGISTRYINDEX, la->terminate_ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, la->state_ref);
    lua_pushstring(L, reason);
    lua_call(L, 2, 0);
    return 0;
}

static void lua_terminate(tr_ctx *ctx, void *state, int reason)
{
    (void)ctx;
    tr_lactor *la = state;
    lua_State *L = la->vm.L;
    lua_settop(L, 0);
    answer_inflight(la);
    live_remove(la);
    if (la->host.stop)
        la->host.stop(la, la->host.arg, reason);
    if (la->terminate_ref != LUA_NOREF) {
        lua_pushcfunction(L, msgh);
        lua_pushcfunction(L, terminate_body);
        lua_pushlightuserdata(L, la);
        lua_pushlightuserdata(L, (void *)tr_lua_reason_name(reason));
        tr_lvm_arm(&la->vm, L);
        if (lua_pcall(L, 2, 0, 1) != LUA_OK)
            log_error(la, "error in terminate", lua_tostring(L, -1));
        tr_lvm_disarm(&la->vm, L);
        lua_settop(L, 0);
    }
    lactor_free(la);
}

const tr_behaviour tr_lua_behaviour = { "lua", lua_init, lua_receive, lua_terminate };

int tr_lua_spawn_actor(tr_runtime *rt, tr_lua_spawn *req, const tr_spawn_opts *opts,
                       tr_pid *pid)
{
    req->err[0] = '\0';
    int rc = tr_spawn(rt, &tr_lua_behaviour, req, opts, pid);
    if (rc < 0 && req->err[0] == '\0')
        snprintf(req->err, sizeof req->err, "%s", tr_strerror(rc));
    return rc;
}
