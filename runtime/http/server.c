/*
 * server.c — the HTTP server of a runtime: a listening socket per worker (all on
 * one port, SO_REUSEPORT: the kernel spreads connections), and on each worker a
 * handler VM — a Lua actor pinned there that loaded the app script — which owns the
 * listener and the connections and runs every request they bring in a pooled
 * coroutine (app:_serve). No request crosses a thread.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>

#include "http_int.h"

static char worker_key;

tr_http_worker *tr_http_worker_of(lua_State *L)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &worker_key);
    tr_http_worker *hw = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return hw;
}

tr_buf *tr_http_scratch(tr_http_worker *hw)
{
    return &hw->scratch;
}

/* ---- running a request ---- */

static void log_request_error(tr_http_conn *c, const char *what, const char *msg)
{
    tr_http_req *r = &c->req;
    fprintf(stderr, "troupe: http %s %.*s (request %.*s): %s: %s\n",
            llhttp_method_name((llhttp_method_t)r->method), (int)r->url_len, r->arena.data,
            (int)r->id_len, r->id, what, msg ? msg : "(no message)");
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A replaced VM with no request left exits (its terminate frees it: vm_stop). */
static void vm_retire_if_idle(tr_http_vm *vm)
{
    if (vm->inflight == 0 && !vm->exiting && vm != vm->hw->cur) {
        vm->exiting = 1;
        tr_kill(vm->hw->rt, vm->pid, TR_EXIT_SHUTDOWN);
    }
}

static void vm_request_ended(tr_http_vm *vm)
{
    if (vm == NULL)
        return;
    vm->inflight--;
    atomic_fetch_sub_explicit(&vm->hw->pub_inflight, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&vm->pub_inflight, 1, memory_order_relaxed);
    vm_retire_if_idle(vm);
}

void tr__http_conn_count(tr_http_worker *hw)
{
    atomic_store_explicit(&hw->pub_conns, hw->live_conns, memory_order_relaxed);
}

/* The Lua job of a request ended. */
static void req_done(tr_lactor_job *job, lua_State *co, int ok, int idx, int n)
{
    tr_http_req *r = (tr_http_req *)job;
    tr_http_conn *c = r->c;
    if (!c->closed) {
        const char *msg = !ok && n > 0 ? lua_tostring(co, idx) : NULL;
        if (r->state == TR__RQ_RUNNING) {
            if (ok) {
                log_request_error(c, "error", "the handler sent no response");
                tr__http_error_response(c, 500, "Internal Server Error", 0);
            } else {
                int budget = msg && strstr(msg, TR_LVM_BUDGET_MSG) != NULL;
                log_request_error(c, "error", msg);
                tr__http_error_response(c, budget ? 503 : 500,
                                        budget ? "Service Unavailable"
                                               : "Internal Server Error", 0);
            }
        } else if (r->state == TR__RQ_STREAMING) {
            if (ok) {
                tr_http_stream_end(r);
            } else {
                /* A stream cut short: the client must not take it as whole. */
                log_request_error(c, "error", msg);
                r->keep_alive = 0;
                c->closing = 1;
            }
        } else if (!ok) {
            log_request_error(c, "error after the response", msg);
        }
    }
    tr_http_vm *vm = r->vm;
    r->vm = NULL;
    tr__http_req_finished(r);
    vm_request_ended(vm);
}

/* Protected: pushes app:_serve's arguments and starts the job. */
static int serve_protected(lua_State *L)
{
    tr_http_conn *c = lua_touserdata(L, 1);
    tr_http_req *r = &c->req;
    tr_http_vm *vm = r->vm;
    lua_settop(L, 0);
    luaL_checkstack(L, 12, NULL);
    lua_rawgeti(L, LUA_REGISTRYINDEX, vm->serve_ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, tr_lactor_module_ref(vm->la));
    lua_pushinteger(L, (lua_Integer)(((uint64_t)c->index << 32) | r->seq));
    lua_pushstring(L, llhttp_method_name((llhttp_method_t)r->method));
    const char *url = r->arena.data;
    const char *q = memchr(url, '?', r->url_len);
    if (q) {
        lua_pushlstring(L, url, (size_t)(q - url));
        lua_pushlstring(L, q + 1, r->url_len - (size_t)(q - url) - 1);
    } else {
        lua_pushlstring(L, url, r->url_len);
        lua_pushnil(L);
    }
    if (r->body_expected)
        lua_pushlstring(L, r->arena.data + r->body_off, r->body_len);
    else
        lua_pushnil(L);
    lua_pushstring(L, c->ip);
    lua_pushlstring(L, r->id, r->id_len);
    if (tr_lactor_run(vm->la, 8, &r->job) < 0)
        return luaL_error(L, "out of memory");
    return 0;
}

int tr__http_dispatch(tr_http_conn *c)
{
    tr_http_worker *hw = c->hw;
    tr_http_req *r = &c->req;
    if (r->id_len == 0) {
        /* prefix (random per process, then the worker) + a counter in hex */
        size_t n = hw->id_prefix_len;
        memcpy(r->id, hw->id_prefix, n);
        char tmp[16];
        size_t k = 0;
        uint64_t v = hw->requests;
        do {
            tmp[k++] = "0123456789abcdef"[v & 15];
            v >>= 4;
        } while (v);
        while (k)
            r->id[n++] = tmp[--k];
        r->id_len = (uint8_t)n;
    }
    hw->requests++;
    tr_http_vm *vm = hw->cur;
    if (vm == NULL) {
        tr__http_error_response(c, 503, "Service Unavailable", 1);
        return 0;
    }
    if (++hw->seq == 0)
        hw->seq = 1;
    r->seq = hw->seq;
    r->state = TR__RQ_RUNNING;
    r->job.done = req_done;
    r->vm = vm;
    vm->inflight++;
    atomic_fetch_add_explicit(&hw->pub_inflight, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&vm->pub_inflight, 1, memory_order_relaxed);
    c->busy = 1;
    lua_State *L = tr_lactor_state(vm->la);
    tr_ctx *prev = tr_ctx_enter(vm->ctx);
    lua_pushcfunction(L, serve_protected);
    lua_pushlightuserdata(L, c);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        /* The job never started (out of memory at the VM's cap): answer here. */
        log_request_error(c, "error", lua_tostring(L, -1));
        lua_pop(L, 1);
        tr__http_error_response(c, 503, "Service Unavailable", 0);
        r->vm = NULL;
        tr__http_req_finished(r);
        vm_request_ended(vm);
    }
    tr_ctx_leave(vm->ctx, prev);
    return 0;
}

/* Protected: app:_body_limit(method, path). */
static int limit_protected(lua_State *L)
{
    tr_http_conn *c = lua_touserdata(L, 1);
    tr_http_req *r = &c->req;
    lua_settop(L, 0);
    tr_http_vm *vm = c->hw->cur;
    lua_rawgeti(L, LUA_REGISTRYINDEX, vm->limit_ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, tr_lactor_module_ref(vm->la));
    lua_pushstring(L, llhttp_method_name((llhttp_method_t)r->method));
    const char *q = memchr(r->arena.data, '?', r->url_len);
    lua_pushlstring(L, r->arena.data, q ? (size_t)(q - r->arena.data) : r->url_len);
    lua_call(L, 3, 1);
    return 1;
}

size_t tr__http_body_limit(tr_http_conn *c)
{
    tr_http_worker *hw = c->hw;
    size_t limit = hw->srv->o.body_limit;
    tr_http_vm *hv = hw->cur;
    if (hv == NULL || hv->limit_ref == LUA_NOREF)
        return limit;
    lua_State *L = tr_lactor_state(hv->la);
    tr_lvm *vm = tr_lvm_of(L);
    tr_ctx *prev = tr_ctx_enter(hv->ctx);
    lua_pushcfunction(L, limit_protected);
    lua_pushlightuserdata(L, c);
    tr_lvm_arm(vm, L);
    int st = lua_pcall(L, 1, 1, 0);
    tr_lvm_disarm(vm, L);
    if (st != LUA_OK)
        log_request_error(c, "error in _body_limit", lua_tostring(L, -1));
    else if (lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 0)
        limit = (size_t)lua_tointeger(L, -1);
    lua_pop(L, 1);
    tr_ctx_leave(hv->ctx, prev);
    return limit;
}

/* ---- the handler VM's life ---- */

static void on_connection(uv_stream_t *s, int status)
{
    tr_http_worker *hw = s->data;
    if (status < 0 || hw->stopped)
        return;
    tr__http_accept(hw);
}

static int field_ref(lua_State *L, int t, const char *name)
{
    if (lua_getfield(L, t, name) != LUA_TFUNCTION) {
        lua_pop(L, 1);
        return LUA_NOREF;
    }
    return luaL_ref(L, LUA_REGISTRYINDEX);
}

static void on_drain_timer(uv_timer_t *t);

/* The listener of hw, opened by its first VM (the socket was bound at start). */
static int open_listener(tr_http_worker *hw)
{
    uv_loop_t *loop = tr_worker_loop(hw->rt, hw->id);
    if (uv_tcp_init(loop, &hw->listener) != 0)
        return -1;
    hw->listener.data = hw;
    hw->listening = 1;
    uv_timer_init(loop, &hw->drain_timer);
    hw->drain_timer.data = hw;
    hw->timer_on = 1;
    int rc = uv_tcp_open(&hw->listener, hw->fd);
    if (rc == 0) {
        hw->fd = -1;
        rc = uv_listen((uv_stream_t *)&hw->listener, 4096, on_connection);
    }
    if (rc != 0) {
        fprintf(stderr, "troupe: http: worker %d cannot listen: %s\n", hw->id, uv_strerror(rc));
        return -1;
    }
    return 0;
}

static void close_listener(tr_http_worker *hw)
{
    if (hw->listening) {
        uv_close((uv_handle_t *)&hw->listener, NULL);
        hw->listening = 0;
    }
    if (hw->fd >= 0) {
        close(hw->fd);
        hw->fd = -1;
    }
}

static void vm_unlist(tr_http_vm *vm)
{
    tr_http_server *srv = vm->hw->srv;
    pthread_mutex_lock(&srv->vms_lock);
    for (tr_http_vm **p = &srv->vms; *p; p = &(*p)->all_next)
        if (*p == vm) {
            *p = vm->all_next;
            break;
        }
    pthread_mutex_unlock(&srv->vms_lock);
}

/* On the VM's worker, at its first message: it becomes the worker's current VM
 * (the one it replaces finishes what it has, then exits). */
static int vm_start(tr_lactor *la, void *arg)
{
    tr_http_vm *vm = arg;
    tr_http_worker *hw = vm->hw;
    lua_State *L = tr_lactor_state(la);
    vm->la = la;
    vm->ctx = tr_lactor_ctx(la);
    vm->pid = tr_self(vm->ctx);
    if (!lua_checkstack(L, 4))
        return -1;
    lua_pushlightuserdata(L, hw);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &worker_key);
    lua_rawgeti(L, LUA_REGISTRYINDEX, tr_lactor_module_ref(la));
    vm->serve_ref = field_ref(L, -1, "_serve");
    vm->limit_ref = field_ref(L, -1, "_body_limit");
    lua_pop(L, 1);
    if (hw->stopped || hw->draining)
        return -1;
    if (!hw->listening && hw->fd >= 0 && open_listener(hw) < 0)
        return -1;
    tr_http_vm *old = hw->cur;
    if (old && old->gen > vm->gen)
        return -1;                  /* a newer generation got here first */
    hw->cur = vm;
    atomic_store(&hw->cur_pid, (uint64_t)vm->pid);
    atomic_store(&hw->cur_gen, vm->gen);
    if (old) {
        old->retired_ms = now_ms();
        old->next = hw->retired;
        hw->retired = old;
        vm_retire_if_idle(old);
        if (hw->timer_on && !uv_is_active((uv_handle_t *)&hw->drain_timer))
            uv_timer_start(&hw->drain_timer, on_drain_timer, 250, 250);
    }
    return 0;
}

/* Replaced VMs past the drain deadline are stopped; their requests are cancelled. */
static void on_drain_timer(uv_timer_t *t)
{
    tr_http_worker *hw = t->data;
    uint64_t now = now_ms(), limit = hw->srv->o.drain_ms;
    for (tr_http_vm *vm = hw->retired; vm; vm = vm->next)
        if (!vm->exiting && now - vm->retired_ms >= limit) {
            vm->exiting = 1;
            tr_kill(hw->rt, vm->pid, TR_EXIT_KILL);
        }
    if (hw->retired == NULL)
        uv_timer_stop(t);
}

/* In the VM's terminate. A replaced VM just goes (requests it still had are
 * cancelled); the current one going means the server stops on this worker. */
static void vm_stop(tr_lactor *la, void *arg, int reason)
{
    (void)la;
    (void)reason;
    tr_http_vm *vm = arg;
    tr_http_worker *hw = vm->hw;
    for (tr_http_vm **p = &hw->retired; *p; p = &(*p)->next)
        if (*p == vm) {
            *p = vm->next;
            break;
        }
    if (vm->inflight)
        atomic_fetch_sub_explicit(&hw->pub_inflight, vm->inflight, memory_order_relaxed);
    tr__http_abandon(hw, vm);
    if (hw->cur == vm) {
        hw->cur = NULL;
        hw->stopped = 1;
        close_listener(hw);
        tr__http_close_all(hw);
        if (hw->timer_on) {
            uv_close((uv_handle_t *)&hw->drain_timer, NULL);
            hw->timer_on = 0;
        }
    }
    if (vm->la) {
        luaL_unref(tr_lactor_state(vm->la), LUA_REGISTRYINDEX, vm->serve_ref);
        luaL_unref(tr_lactor_state(vm->la), LUA_REGISTRYINDEX, vm->limit_ref);
    }
    vm_unlist(vm);
    tr_free(vm);
}

enum { TAG_DRAIN = 0x48545401u };

/* Messages from C to the current VM: DRAIN (graceful shutdown on this worker). */
static int vm_message(tr_lactor *la, void *arg, tr_msg *m)
{
    (void)la;
    tr_http_vm *vm = arg;
    tr_http_worker *hw = vm->hw;
    if (m->tag != TAG_DRAIN)
        return 0;
    if (!hw->draining) {
        hw->draining = 1;
        close_listener(hw);
        tr__http_drain_conns(hw);
    }
    return 1;
}

/* ---- starting ---- */

static void server_release(tr_http_server *srv, int started)
{
    for (int i = 0; srv->w && i < srv->n; i++) {
        tr_http_worker *hw = &srv->w[i];
        /* The handler VMs are gone: their close callbacks are pending on loops no
         * thread runs any more. Run them here, then free what is left. */
        hw->stopped = 1;
        if (started) {
            close_listener(hw);
            if (hw->timer_on) {
                uv_close((uv_handle_t *)&hw->drain_timer, NULL);
                hw->timer_on = 0;
            }
            tr__http_close_all(hw);
            uv_run(tr_worker_loop(srv->rt, i), UV_RUN_NOWAIT);
        }
        if (hw->fd >= 0)
            close(hw->fd);
        tr_free(hw->conns);
        tr_free(hw->free_idx);
        tr_buf_free(&hw->scratch);
    }
    pthread_mutex_destroy(&srv->lock);
    pthread_mutex_destroy(&srv->vms_lock);
    tr_free(srv->w);
    tr_free(srv->script);
    tr_free(srv->host);
    tr_free(srv->lua_path);
    tr_free(srv);
}

static void server_free(void *p)
{
    server_release(p, 1);
}

static char *dup_str(const char *s)
{
    if (s == NULL)
        return NULL;
    size_t n = strlen(s) + 1;
    char *p = tr_malloc(n);
    if (p)
        memcpy(p, s, n);
    return p;
}

enum { LUA_PATH_MAX = 4 * PATH_MAX };

/* A socket bound to the address, with SO_REUSEPORT so every worker binds one. */
static int bind_socket(const struct sockaddr *sa, socklen_t len, char *err, size_t errlen)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0 ||
        bind(fd, sa, len) != 0) {
        snprintf(err, errlen, "cannot bind: %s", strerror(errno));
        close(fd);
        return -1;
    }
    /* Listening now, not when the worker's VM opens the listener, so that a client
     * told "serving" is never refused: early connections wait in the backlog. */
    if (listen(fd, 4096) != 0) {
        snprintf(err, errlen, "cannot listen: %s", strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static void random_prefix(char *out, size_t n)
{
    unsigned v = 0;
    FILE *f = fopen("/dev/urandom", "rb");
    if (f == NULL || fread(&v, sizeof v, 1, f) != 1)
        v = (unsigned)getpid() ^ (unsigned)time(NULL);
    if (f)
        fclose(f);
    snprintf(out, n, "%08x-", v);
}

/*
 * Starts generation ++srv->gen: a handler VM per worker, loaded (and self-checked)
 * here, on the calling thread. If any fails, the ones made are stopped before they
 * take a request and the error says why. Else each becomes its worker's current VM
 * at its first message; this waits (up to 5 s) until all have.
 */
static int spawn_generation(tr_http_server *srv, char *err, size_t errlen)
{
    tr_runtime *rt = srv->rt;
    uint64_t gen = srv->gen + 1;
    tr_http_vm **vms = tr_malloc(sizeof *vms * (size_t)srv->n);
    if (vms == NULL) {
        snprintf(err, errlen, "out of memory");
        return TR_ENOMEM;
    }
    int rc = 0, made = 0;
    for (int i = 0; i < srv->n && rc == 0; i++) {
        tr_http_vm *vm = tr_malloc(sizeof *vm);
        if (vm == NULL) {
            snprintf(err, errlen, "out of memory");
            rc = TR_ENOMEM;
            break;
        }
        memset(vm, 0, sizeof *vm);
        vm->hw = &srv->w[i];
        vm->gen = gen;
        pthread_mutex_lock(&srv->vms_lock);
        vm->all_next = srv->vms;
        srv->vms = vm;
        pthread_mutex_unlock(&srv->vms_lock);
        vm->serve_ref = vm->limit_ref = LUA_NOREF;
        tr_lua_host hooks = { vm_start, vm_stop, vm_message, vm };
        tr_lua_spawn req;
        memset(&req, 0, sizeof req);
        req.script = srv->script;
        req.app = 1;
        req.host = &hooks;
        req.vm = srv->vm;
        tr_spawn_opts so = TR_SPAWN_OPTS_INIT;
        so.worker = i;
        rc = tr_lua_spawn_actor(rt, &req, &so, &vm->pid);
        if (rc < 0) {
            snprintf(err, errlen, "%s", req.err);
            vm_unlist(vm);
            tr_free(vm);
            break;
        }
        vms[made++] = vm;
    }
    if (rc < 0) {
        /* Not started: their terminate (vm_stop) frees them. */
        for (int j = 0; j < made; j++)
            tr_kill(rt, vms[j]->pid, TR_EXIT_SHUTDOWN);
        tr_free(vms);
        return rc;
    }
    srv->gen = gen;
    for (int i = 0; i < srv->n; i++)
        tr_send(rt, vms[i]->pid, TR_LUA_TAG_START, NULL, 0);
    tr_free(vms);
    /* Until every worker serves it (not from a worker: it would wait on itself). */
    if (tr_current_worker(rt) < 0) {
        uint64_t until = now_ms() + 5000;
        for (int i = 0; i < srv->n; i++) {
            while (atomic_load(&srv->w[i].cur_gen) < gen && now_ms() < until) {
                struct timespec ts = { 0, 200000 };
                nanosleep(&ts, NULL);
            }
            if (atomic_load(&srv->w[i].cur_gen) < gen) {
                snprintf(err, errlen, "generation %llu was loaded but worker %d did not "
                         "switch to it within 5 s", (unsigned long long)gen, i);
                return TR_ETIMEDOUT;
            }
        }
    }
    return 0;
}

int tr_http_reload(tr_runtime *rt, char *err, size_t errlen, uint64_t *gen)
{
    tr_http_server *srv = tr_runtime_ext(rt, TR_EXT_HTTP);
    err[0] = '\0';
    if (srv == NULL) {
        snprintf(err, errlen, "no HTTP server runs");
        return TR_ESTATE;
    }
    pthread_mutex_lock(&srv->lock);
    int rc;
    if (srv->draining) {
        snprintf(err, errlen, "the server is shutting down");
        rc = TR_ESTOPPED;
    } else {
        rc = spawn_generation(srv, err, errlen);
    }
    srv->reloads++;
    if (rc < 0) {
        srv->reload_failures++;
        snprintf(srv->last_error, sizeof srv->last_error, "%s", err);
    }
    if (gen)
        *gen = srv->gen;
    pthread_mutex_unlock(&srv->lock);
    return rc;
}

int tr_http_drain(tr_runtime *rt, int deadline_ms)
{
    tr_http_server *srv = tr_runtime_ext(rt, TR_EXT_HTTP);
    if (srv == NULL)
        return 0;
    pthread_mutex_lock(&srv->lock);
    srv->draining = 1;                  /* reloads are refused from now on */
    pthread_mutex_unlock(&srv->lock);
    /* Each worker's current VM closes its listener and idle connections. */
    for (int i = 0; i < srv->n; i++)
        tr_send(rt, (tr_pid)atomic_load(&srv->w[i].cur_pid), TAG_DRAIN, NULL, 0);
    uint64_t until = now_ms() + (uint64_t)(deadline_ms < 0 ? 0 : deadline_ms);
    for (;;) {
        uint32_t open = 0;
        for (int i = 0; i < srv->n; i++)
            open += atomic_load_explicit(&srv->w[i].pub_conns, memory_order_relaxed);
        if (open == 0)
            return 0;
        if (now_ms() >= until)
            return TR_ETIMEDOUT;
        struct timespec ts = { 0, 5000000 };
        nanosleep(&ts, NULL);
    }
}

int tr_http_status(tr_runtime *rt, char *out, size_t n)
{
    tr_http_server *srv = tr_runtime_ext(rt, TR_EXT_HTTP);
    if (srv == NULL)
        return snprintf(out, n, "{\"serving\":false}");
    pthread_mutex_lock(&srv->lock);
    uint32_t conns = 0, inflight = 0;
    for (int i = 0; i < srv->n; i++) {
        conns += atomic_load_explicit(&srv->w[i].pub_conns, memory_order_relaxed);
        inflight += atomic_load_explicit(&srv->w[i].pub_inflight, memory_order_relaxed);
    }
    /* requests in flight per live generation: {"3":2,"4":10} */
    char gens[512];
    size_t g = 0;
    gens[g++] = '{';
    pthread_mutex_lock(&srv->vms_lock);
    uint64_t seen[16];
    int nseen = 0;
    for (tr_http_vm *a = srv->vms; a && nseen < 16; a = a->all_next) {
        int dup = 0;
        for (int j = 0; j < nseen; j++)
            dup |= seen[j] == a->gen;
        if (dup)
            continue;
        seen[nseen++] = a->gen;
        uint32_t sum = 0;
        for (tr_http_vm *b = a; b; b = b->all_next)
            if (b->gen == a->gen)
                sum += atomic_load_explicit(&b->pub_inflight, memory_order_relaxed);
        g += (size_t)snprintf(gens + g, sizeof gens - g - 2, "%s\"%llu\":%u",
                              nseen > 1 ? "," : "", (unsigned long long)a->gen, sum);
        if (g >= sizeof gens - 40)
            break;
    }
    pthread_mutex_unlock(&srv->vms_lock);
    gens[g++] = '}';
    gens[g] = '\0';
    char esc[sizeof srv->last_error * 2];
    size_t k = 0;
    for (const char *p = srv->last_error; *p && k < sizeof esc - 7; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch == '"' || ch == '\\') {
            esc[k++] = '\\';
            esc[k++] = (char)ch;
        } else if (ch < 0x20) {
            k += (size_t)snprintf(esc + k, 7, "\\u%04x", ch);
        } else {
            esc[k++] = (char)ch;
        }
    }
    esc[k] = '\0';
    int len = snprintf(out, n,
                       "{\"serving\":true,\"port\":%d,\"workers\":%d,\"generation\":%llu,"
                       "\"connections\":%u,\"requests_in_flight\":%u,"
                       "\"in_flight_by_generation\":%s,\"reloads\":%llu,"
                       "\"reload_failures\":%llu,\"last_reload_error\":%s%s%s}",
                       srv->port, srv->n, (unsigned long long)srv->gen, conns, inflight, gens,
                       (unsigned long long)srv->reloads,
                       (unsigned long long)srv->reload_failures, k ? "\"" : "null", esc,
                       k ? "\"" : "");
    pthread_mutex_unlock(&srv->lock);
    return len;
}

int tr_http_start(tr_runtime *rt, const tr_http_config *opts, char *err, size_t errlen)
{
    err[0] = '\0';
    if (opts == NULL || opts->script == NULL || opts->port < 0 || opts->port > 65535) {
        snprintf(err, errlen, opts == NULL || opts->script == NULL ? "no app script"
                                                                  : "bad port");
        return TR_EINVAL;
    }
    /* A client gone mid-write must be an EPIPE, not the death of the process: the
     * default SIGPIPE action is changed, a handler the embedder set is kept. */
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
        signal(SIGPIPE, SIG_IGN);
    if (tr_runtime_ext(rt, TR_EXT_HTTP)) {
        snprintf(err, errlen, "an HTTP server already runs");
        return TR_EEXIST;
    }
    tr_http_server *srv = tr_malloc(sizeof *srv);
    if (srv == NULL)
        goto nomem;
    memset(srv, 0, sizeof *srv);
    if (pthread_mutex_init(&srv->lock, NULL) != 0) {
        tr_free(srv);
        goto nomem;
    }
    if (pthread_mutex_init(&srv->vms_lock, NULL) != 0) {
        pthread_mutex_destroy(&srv->lock);
        tr_free(srv);
        goto nomem;
    }
    srv->rt = rt;
    srv->o = *opts;
    srv->n = tr_runtime_workers(rt);
    srv->script = dup_str(opts->script);
    srv->host = dup_str(opts->host ? opts->host : "127.0.0.1");
    if (opts->lua.lua_path)
        srv->lua_path = dup_str(opts->lua.lua_path);
    else if ((srv->lua_path = tr_malloc(LUA_PATH_MAX)) != NULL &&
             tr__lua_script_path(srv->lua_path, LUA_PATH_MAX, opts->script) < 0) {
        snprintf(err, errlen, "the default package.path is too long for %s", opts->script);
        server_release(srv, 0);
        return TR_EINVAL;
    }
    srv->w = tr_malloc(sizeof *srv->w * (size_t)srv->n);
    if (srv->script == NULL || srv->host == NULL || srv->w == NULL || srv->lua_path == NULL) {
        server_release(srv, 0);
        goto nomem;
    }
    srv->o.script = srv->script;
    srv->o.host = srv->host;
    srv->o.lua.lua_path = srv->lua_path;
    srv->vm = (tr_lvm_opts){
        .mem_limit = opts->lua.mem_limit,
        .budget_ms = opts->lua.budget_ms ? opts->lua.budget_ms : 1000,
        .unsafe = opts->lua.unsafe != 0,
        .lua_path = srv->lua_path,
        .pooled = true,
    };
    if (srv->o.max_head == 0) srv->o.max_head = 16 * 1024;
    if (srv->o.body_limit == 0) srv->o.body_limit = 1024 * 1024;
    if (srv->o.header_timeout_ms == 0) srv->o.header_timeout_ms = 10000;
    if (srv->o.body_timeout_ms == 0) srv->o.body_timeout_ms = 60000;
    if (srv->o.idle_timeout_ms == 0) srv->o.idle_timeout_ms = 5000;
    if (srv->o.max_conns == 0) srv->o.max_conns = 10000;
    if (srv->o.drain_ms == 0) srv->o.drain_ms = 30000;
    memset(srv->w, 0, sizeof *srv->w * (size_t)srv->n);
    char prefix[20];
    random_prefix(prefix, sizeof prefix);
    for (int i = 0; i < srv->n; i++) {
        tr_http_worker *hw = &srv->w[i];
        hw->srv = srv;
        hw->rt = rt;
        hw->id = i;
        hw->fd = -1;
        snprintf(hw->id_prefix, sizeof hw->id_prefix, "%s%d-", prefix, i);
        hw->id_prefix_len = strlen(hw->id_prefix);
    }

    /* Bind every worker's socket now, so an address in use fails the start. */
    struct sockaddr_storage ss;
    socklen_t sl;
    memset(&ss, 0, sizeof ss);
    const char *host = strcmp(srv->host, "localhost") == 0 ? "127.0.0.1" : srv->host;
    if (strchr(host, ':')) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)opts->port);
        if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1)
            goto badhost;
        sl = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)opts->port);
        if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
            goto badhost;
        sl = sizeof *a;
    }
    for (int i = 0; i < srv->n; i++) {
        srv->w[i].fd = bind_socket((struct sockaddr *)&ss, sl, err, errlen);
        if (srv->w[i].fd < 0) {
            server_release(srv, 0);
            return TR_ESYS;
        }
        if (i == 0) {   /* port 0: the others bind the port the first one got */
            getsockname(srv->w[0].fd, (struct sockaddr *)&ss, &sl);
            srv->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                       : ((struct sockaddr_in *)&ss)->sin_port);
        }
    }
    if (tr_runtime_ext_set(rt, TR_EXT_HTTP, srv, server_free) < 0) {
        snprintf(err, errlen, "an HTTP server already runs");
        server_release(srv, 0);
        return TR_EEXIST;
    }

    /* From here srv belongs to the runtime (freed with it). Under srv->lock like a
     * reload: a SIGHUP or tr_http_status may reach srv from now on. */
    pthread_mutex_lock(&srv->lock);
    int rc = spawn_generation(srv, err, errlen);
    pthread_mutex_unlock(&srv->lock);
    if (rc < 0)
        for (int i = 0; i < srv->n; i++)
            close_listener(&srv->w[i]);
    return rc;

badhost:
    snprintf(err, errlen, "bad listen address '%s' (an IPv4 or IPv6 address)", srv->host);
    server_release(srv, 0);
    return TR_EINVAL;
nomem:
    snprintf(err, errlen, "out of memory");
    return TR_ENOMEM;
}

int tr_http_port(tr_runtime *rt)
{
    tr_http_server *srv = tr_runtime_ext(rt, TR_EXT_HTTP);
    return srv ? srv->port : -1;
}
