/*
 * budget.c — the CPU budget of a message or request (runtime/lua).
 *
 * A count hook costs every Lua instruction: while one is set, Lua 5.4 sends each
 * instruction through luaG_traceexec, and Lua code runs at about half its speed. So on
 * a worker thread no hook is set while a turn is within its budget. Instead:
 *   - tr_lvm_arm publishes the turn's deadline in the thread's slot;
 *   - a watchdog thread (one per process, while some worker has a slot) sleeps until
 *     the earliest deadline, waking at least every `period` while turns run, and sends
 *     SIGURG to a worker whose turn went past its deadline, or whose runtime went past
 *     its stop deadline (tr_runtime_stopping 2);
 *   - the handler, on that worker, checks the turn for itself and sets the count hook
 *     on the Lua thread running (lua_sethook may be called from a signal handler: lua.c
 *     does it on SIGINT). Lua 5.4 looks at its hooks again at the next call, return or
 *     backward jump, and the hook raises the budget error, then again at every
 *     instruction until the turn ends, so a pcall in the script cannot swallow it.
 * The Lua thread running is the coroutine the turn resumed, or one the script resumed
 * inside it: coroutine.resume and coroutine.wrap are replaced by versions that keep
 * vm->cur (tr__lvm_track_coroutines).
 *
 * Elsewhere the count hook runs all the time, every HOOK_EVERY instructions comparing
 * the clock with the deadline: off worker threads (an actor's init in tr_spawn from a
 * thread of the embedder), and under ThreadSanitizer, which holds an asynchronous
 * signal until the thread enters libc, which a Lua loop never does.
 *
 * SIGURG is the signal because its default action is to do nothing (Go preempts
 * goroutines with it for the same reason); one that is not ours (no SI_TKILL from this
 * process to a worker) goes on to the handler installed before ours.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>

#include "vm.h"

#define HOOK_EVERY 1000

#if defined(__SANITIZE_THREAD__)
#define SIGNALS 0
#else
#define SIGNALS 1
#endif

#define MS ((uint64_t)1000000)
#define PERIOD_MIN (1 * MS)
#define PERIOD_MAX (50 * MS)
#define PARK_AFTER (1000 * MS)  /* no turn seen that long: the watchdog sleeps until one */
#define NONE UINT64_MAX

struct tr__budget_slot {
    pthread_t         thread;
    tr_runtime       *rt;
    _Atomic uint64_t  deadline;   /* of the turn armed; NONE: none */
    _Atomic uint32_t  turn;       /* counts the turns armed */
    _Atomic int       armed;
    uint32_t          seen;       /* the watchdog's: turn at its last look */
    uint32_t          signalled;  /* the watchdog's: the turn it sent SIGURG for */
    bool              was_signalled;
    tr_lvm           *vm;         /* the turn's VM: this thread and its handler only */
    tr__budget_slot  *next;
};

static struct {
    pthread_mutex_t   lock;
    pthread_cond_t    cond;       /* on CLOCK_MONOTONIC */
    tr__budget_slot  *slots;
    bool              running;
    uint64_t          gen;        /* a watchdog runs while this is the one it started with */
    pthread_t         thread;
    _Atomic uint64_t  target;     /* when the watchdog wakes next; NONE: when woken */
    _Atomic uint64_t  min_budget; /* the smallest budget armed yet (ns): sets the period */
} wd = { .lock = PTHREAD_MUTEX_INITIALIZER, .target = NONE, .min_budget = NONE };

static pthread_once_t setup_once = PTHREAD_ONCE_INIT;
static bool usable;                     /* the handler, key and cond are in place */
static pthread_key_t slot_key;          /* its destructor takes a slot out at thread exit */
static struct sigaction prev_action;    /* SIGURG's before ours */
static _Thread_local tr__budget_slot *my_slot;

static void budget_hook(lua_State *L, lua_Debug *ar);

/* ---- the handler ---- */

static void chain(int sig, siginfo_t *si, void *uc)
{
    if (prev_action.sa_flags & SA_SIGINFO) {
        if (prev_action.sa_sigaction)
            prev_action.sa_sigaction(sig, si, uc);
    } else if (prev_action.sa_handler != SIG_DFL && prev_action.sa_handler != SIG_IGN) {
        prev_action.sa_handler(sig);
    }
}

static bool over(const tr_lvm *vm)
{
    return (vm->deadline && tr_lvm_now_ns() >= vm->deadline) ||
           (vm->rt && tr_runtime_stopping(vm->rt) == 2);
}

static void on_signal(int sig, siginfo_t *si, void *uc)
{
    tr__budget_slot *s = my_slot;
    if (s == NULL || si->si_code != SI_TKILL || si->si_pid != getpid()) {
        chain(sig, si, uc);
        return;
    }
    int saved = errno;
    if (atomic_load_explicit(&s->armed, memory_order_relaxed)) {
        tr_lvm *vm = s->vm;             /* NULL while the last turn is being disarmed */
        lua_State *co = vm ? vm->cur : NULL;
        if (co && over(vm))
            lua_sethook(co, budget_hook, LUA_MASKCOUNT, 1);
    }
    errno = saved;
}

/* ---- the watchdog ---- */

static uint64_t period(void)
{
    uint64_t p = atomic_load_explicit(&wd.min_budget, memory_order_relaxed) / 2;
    return p < PERIOD_MIN ? PERIOD_MIN : p > PERIOD_MAX ? PERIOD_MAX : p;
}

/* Signals the slots whose turn is over; returns whether any turn ran since the last
 * look, and lowers *next to the earliest deadline still ahead. Under wd.lock. */
static bool scan(uint64_t now, uint64_t *next)
{
    bool active = false;
    for (tr__budget_slot *s = wd.slots; s; s = s->next) {
        uint32_t turn = atomic_load(&s->turn);
        if (turn != s->seen) {
            s->seen = turn;
            active = true;
        }
        if (!atomic_load(&s->armed))
            continue;
        active = true;
        uint64_t d = atomic_load(&s->deadline);
        if (now >= d || tr_runtime_stopping(s->rt) == 2) {
            /* Once per turn: the hook, once set, stays until the turn ends. The handler
             * checks the turn itself, so one that ended meanwhile is left alone. */
            if (!s->was_signalled || s->signalled != turn) {
                s->signalled = turn;
                s->was_signalled = true;
                pthread_kill(s->thread, SIGURG);
            }
        } else if (d < *next) {
            *next = d;
        }
    }
    return active;
}

/* Whether a turn was armed since scan looked. Under wd.lock. */
static bool moved(void)
{
    for (tr__budget_slot *s = wd.slots; s; s = s->next)
        if (atomic_load(&s->turn) != s->seen)
            return true;
    return false;
}

static void *watch(void *arg)
{
    uint64_t gen = (uint64_t)(uintptr_t)arg;
    pthread_mutex_lock(&wd.lock);
    uint64_t active_at = tr_lvm_now_ns();
    while (wd.gen == gen) {
        uint64_t now = tr_lvm_now_ns(), until = NONE;
        if (scan(now, &until))
            active_at = now;
        if (now - active_at < PARK_AFTER && now + period() < until)
            until = now + period();     /* turns are running: look again soon */
        /* A turn armed after scan read its slot either sees this target (and wakes us
         * when its deadline is sooner) or is seen by moved(): the target's store and
         * the turn's are both seq_cst. */
        atomic_store(&wd.target, until);
        if (moved())
            continue;
        if (until == NONE) {
            pthread_cond_wait(&wd.cond, &wd.lock);
        } else {
            struct timespec ts = { (time_t)(until / 1000000000u), (long)(until % 1000000000u) };
            pthread_cond_timedwait(&wd.cond, &wd.lock, &ts);
        }
    }
    pthread_mutex_unlock(&wd.lock);
    return NULL;
}

static void wake(void)
{
    pthread_mutex_lock(&wd.lock);
    pthread_cond_signal(&wd.cond);
    pthread_mutex_unlock(&wd.lock);
}

/* ---- slots ---- */

/* The thread-exit destructor of a slot: takes it out; the last one stops the watchdog. */
static void unregister(void *p)
{
    tr__budget_slot *s = p;
    pthread_t stop;
    bool join = false;
    pthread_mutex_lock(&wd.lock);
    for (tr__budget_slot **pp = &wd.slots; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    if (wd.slots == NULL && wd.running) {
        wd.running = false;
        wd.gen++;
        stop = wd.thread;
        join = true;
        pthread_cond_broadcast(&wd.cond);
    }
    pthread_mutex_unlock(&wd.lock);
    if (join)
        pthread_join(stop, NULL);
    my_slot = NULL;
    tr_free(s);
}

static void setup(void)
{
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0)
        return;
    int rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (rc == 0)
        rc = pthread_cond_init(&wd.cond, &ca);
    pthread_condattr_destroy(&ca);
    if (rc != 0 || pthread_key_create(&slot_key, unregister) != 0)
        return;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_signal;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    usable = sigaction(SIGURG, &sa, &prev_action) == 0;
}

/* The calling thread's slot for a turn of rt: registered on a worker thread's first
 * turn. NULL where the count hook keeps the budget instead. */
static tr__budget_slot *slot_for(tr_runtime *rt)
{
    tr__budget_slot *s = my_slot;
    if (s)
        return s->rt == rt ? s : NULL;
    if (!SIGNALS || rt == NULL || tr_current_worker(rt) < 0)
        return NULL;
    pthread_once(&setup_once, setup);
    if (!usable || (s = tr_malloc(sizeof *s)) == NULL)
        return NULL;
    memset(s, 0, sizeof *s);
    s->thread = pthread_self();
    s->rt = rt;
    atomic_init(&s->deadline, NONE);
    pthread_mutex_lock(&wd.lock);
    if (!wd.running) {
        if (pthread_create(&wd.thread, NULL, watch, (void *)(uintptr_t)wd.gen) != 0) {
            pthread_mutex_unlock(&wd.lock);
            tr_free(s);
            return NULL;
        }
        wd.running = true;
    }
    s->next = wd.slots;
    wd.slots = s;
    pthread_mutex_unlock(&wd.lock);
    if (pthread_setspecific(slot_key, s) != 0) {
        unregister(s);
        return NULL;
    }
    /* An embedder may have blocked every signal before it created the runtime. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGURG);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    my_slot = s;
    return s;
}

/* ---- turns ---- */

static void budget_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    tr_lvm *vm = tr_lvm_of(L);
    bool stopped = vm->rt && tr_runtime_stopping(vm->rt) == 2;
    if (!vm->expired) {
        if (!stopped && (vm->deadline == 0 || tr_lvm_now_ns() < vm->deadline)) {
            if (vm->slot)       /* set in an earlier turn, on a coroutine kept since */
                lua_sethook(L, NULL, 0, 0);
            return;
        }
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
    tr__budget_slot *s = slot_for(vm->rt);
    vm->slot = s;
    if (s == NULL) {
        lua_sethook(co, budget_hook, LUA_MASKCOUNT, HOOK_EVERY);
        return;
    }
    vm->cur = co;
    vm->outer = s->vm;      /* a turn this one runs inside: an actor's init in a spawn */
    s->vm = vm;
    uint64_t d = vm->deadline ? vm->deadline : NONE;
    atomic_store_explicit(&s->deadline, d, memory_order_relaxed);
    atomic_store_explicit(&s->armed, 1, memory_order_relaxed);
    /* seq_cst, between the stores above and the load of the target: the watchdog
     * either sees the new turn (and the two stores with it) or we see its target. */
    atomic_store(&s->turn, atomic_load_explicit(&s->turn, memory_order_relaxed) + 1);
    bool poke = d <= atomic_load(&wd.target);     /* sooner than it looks, or it sleeps */
    if (vm->budget_ns && vm->budget_ns < atomic_load_explicit(&wd.min_budget,
                                                              memory_order_relaxed)) {
        atomic_store_explicit(&wd.min_budget, vm->budget_ns, memory_order_relaxed);
        poke = true;
    }
    if (poke)
        wake();
    if (vm->rt && tr_runtime_stopping(vm->rt) == 2)
        lua_sethook(co, budget_hook, LUA_MASKCOUNT, 1);
}

void tr_lvm_disarm(tr_lvm *vm, lua_State *co)
{
    tr__budget_slot *s = vm->slot;
    if (s) {
        tr_lvm *outer = vm->outer;
        if (outer) {                    /* back to the turn this one ran inside */
            s->vm = outer;
            atomic_store_explicit(&s->deadline, outer->deadline ? outer->deadline : NONE,
                                  memory_order_relaxed);
            atomic_store(&s->turn, atomic_load_explicit(&s->turn, memory_order_relaxed) + 1);
        } else {
            atomic_store_explicit(&s->armed, 0, memory_order_release);
            s->vm = NULL;
        }
        vm->cur = NULL;
        vm->outer = NULL;
        vm->slot = NULL;
    }
    vm->deadline = 0;
    vm->expired = false;
    lua_sethook(co, NULL, 0, 0);
}

/* ---- coroutines the script resumes ----
 *
 * coroutine.resume and the functions of coroutine.wrap call the library's own (upvalue
 * 1) under a pcall, with vm->cur on the coroutine while it runs. An error comes out as
 * it would have: the library's functions take the caller's position (luaL_where at
 * level 1) for the message of an error in a wrapped coroutine, which from inside a C
 * function is nothing, so co_wrapped adds it.
 */

static void enter(tr_lvm *vm, lua_State *co)
{
    vm->cur = co;
    if (vm->expired)
        lua_sethook(co, budget_hook, LUA_MASKCOUNT, 1);
}

static void leave(tr_lvm *vm, lua_State *L)
{
    vm->cur = L;
    if (vm->expired)                    /* ran out in there: on with it out here */
        lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
}

/* Calls the library function below the n arguments on L, with vm->cur on co while it
 * runs: LUA_OK with its results on L, or the error status with the error there. */
static int call_on(lua_State *L, lua_State *co, int n)
{
    tr_lvm *vm = tr_lvm_of(L);
    bool track = vm->slot != NULL;      /* a turn kept by the watchdog */
    if (track)
        enter(vm, co);
    int st = lua_pcall(L, n, LUA_MULTRET, 0);
    if (track)
        leave(vm, L);
    return st;
}

static int co_resume(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTHREAD);
    lua_State *co = lua_tothread(L, 1);
    int n = lua_gettop(L);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    if (call_on(L, co, n) != LUA_OK)
        return lua_error(L);
    return lua_gettop(L);
}

static int co_wrapped(lua_State *L)
{
    lua_State *co = lua_tothread(L, lua_upvalueindex(2));
    int n = lua_gettop(L);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    int st = call_on(L, co, n);
    if (st == LUA_OK)
        return lua_gettop(L);
    if (st != LUA_ERRMEM && lua_type(L, -1) == LUA_TSTRING) {
        luaL_where(L, 1);
        lua_insert(L, -2);
        lua_concat(L, 2);
    }
    return lua_error(L);
}

static int co_wrap(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_settop(L, 1);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, 1, 1);                  /* the library's function for a new coroutine */
    lua_getupvalue(L, -1, 1);           /* fn co */
    lua_pushcclosure(L, co_wrapped, 2);
    return 1;
}

void tr__lvm_track_coroutines(lua_State *L, int lib)
{
    lib = lua_absindex(L, lib);
    lua_getfield(L, lib, "resume");
    lua_pushcclosure(L, co_resume, 1);
    lua_setfield(L, lib, "resume");
    lua_getfield(L, lib, "wrap");
    lua_pushcclosure(L, co_wrap, 1);
    lua_setfield(L, lib, "wrap");
}
