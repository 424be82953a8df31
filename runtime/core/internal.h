/* internal.h — structures and cross-file helpers of runtime/core. Not installed. */
#ifndef TR_INTERNAL_H
#define TR_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <uv.h>

#include "troupe.h"

#define TR__CACHELINE 64
#define TR__CHUNK_SHIFT 10                      /* 1024 actors per table chunk */
#define TR__CHUNK_SIZE (1u << TR__CHUNK_SHIFT)

/* Internal signal kinds, after the public ones (tr_msg_kind). */
enum {
    TR__SIG_EXIT = TR__MSG_SYSTEM, /* exit signal: from, status = reason */
    TR__SIG_LINK,                  /* from wants a link */
    TR__SIG_UNLINK,
    TR__SIG_MONITOR,               /* from monitors me with ref */
    TR__SIG_DEMONITOR,
};

/* tr_msg.tr__flags */
#define TR__MF_COUNTED 0x02  /* counted in a bounded mailbox's mb_count */
#define TR__MF_REPLIED 0x04  /* a CALL that has been answered */
#define TR__MF_LINKED  0x08  /* an exit signal sent because of a link */

/* Actor states, changed by CAS so that one worker at a time runs an actor. */
enum { TR__IDLE = 0, TR__QUEUED = 1, TR__RUNNING = 2, TR__DEAD = 3 };

/* Actor flags (touched only by the thread running the actor). */
#define TR__AF_TRAP     0x01
#define TR__AF_EXITING  0x02
#define TR__AF_BOUNDED  0x04
#define TR__AF_KEPT     0x08  /* receive kept its message (tr_msg_keep): hands off */

typedef struct tr_actor_ext tr_actor_ext;

/*
 * An actor. Type-stable: the memory of a slot is never freed while the runtime
 * lives, and is reused by the slot's next incarnation, so a sender holding a stale
 * pointer can never touch freed memory. Every message carries the pid it was sent
 * to, and the consumer drops those addressed to an earlier incarnation.
 * First cache line: what senders touch. Second: what the running worker touches.
 */
struct tr_actor {
    _Atomic(tr_msg *)   mb_head;      /* producers exchange here (Vyukov MPSC) */
    _Atomic uint32_t    state;        /* TR__IDLE/QUEUED/RUNNING/DEAD */
    _Atomic uint32_t    gen;          /* generation of the current incarnation */
    _Atomic int32_t     mb_count;     /* only maintained when bounded */
    uint32_t            mb_max;
    int32_t             pinned;       /* worker index, or -1 */
    uint32_t            index;
    tr_runtime         *rt;
    tr_pid              self;         /* this incarnation's pid (set at spawn) */
    char                pad_[TR__CACHELINE - 2 * sizeof(void *) - 8 - 6 * 4];

    tr_msg             *mb_tail;      /* consumer side */
    tr_msg             *mb_stub;      /* stub node: only its first field, the link */
    struct tr_actor    *run_next;     /* run-queue link (one queue at a time) */
    const tr_behaviour *beh;
    void               *ustate;
    tr_actor_ext       *ext;          /* links, monitors, pending calls: lazily */
    uint32_t            flags;
    int32_t             exit_reason;
    tr_msg             *current;      /* the message receive is handling */
};
typedef struct tr_actor tr_actor;

/* Links, monitors and pending calls of one actor; most actors never need it. */
typedef struct { tr_pid pid; uint64_t ref; } tr__pidref;
typedef struct { uint64_t ref; uint64_t timer; } tr__pending;
struct tr_actor_ext {
    tr_pid      *links;    uint32_t n_links, cap_links;
    tr__pidref  *watchers; uint32_t n_watchers, cap_watchers; /* who monitors me */
    tr__pidref  *watching; uint32_t n_watching, cap_watching; /* my monitors */
    tr__pending *calls;    uint32_t n_calls, cap_calls;       /* my calls in flight */
};

/* A timer entry, owned by one worker's heap and id map. */
typedef struct tr__timer {
    uint64_t deadline;   /* tr__now_ms() time */
    uint64_t period;     /* 0: one-shot */
    uint64_t id;         /* (worker + 1) << 48 | sequence */
    tr_pid   to;
    tr_msg  *msg;        /* template (periodic) or the message itself (one-shot) */
    uint32_t heap_pos;
} tr__timer;

/* A command for a worker from another thread. */
typedef struct tr__cmd {
    struct tr__cmd *next;
    int             op;
    uint64_t        a, b, c, d;
    tr_msg         *msg;
    struct tr__timer *timer;  /* TIMER_ADD: the entry, allocated by the sender */
} tr__cmd;
enum { TR__CMD_TIMER_ADD, TR__CMD_TIMER_CANCEL };

#define TR__POOL_CLASSES 3
typedef struct { tr_msg *head, *tail; uint32_t n; } tr__pool_batch;

typedef struct tr_worker {
    tr_runtime      *rt;
    int              id;
    uv_thread_t      thread;
    uv_loop_t        loop;
    uv_async_t       wake;
    uv_timer_t       timer;          /* armed for the earliest tr__timer */
    int              started;

    pthread_mutex_t  qlock;          /* guards the two queues and the commands */
    tr_actor        *fq_head, *fq_tail;  /* floating: others may steal from here */
    tr_actor        *pq_head, *pq_tail;  /* pinned to this worker */
    tr__cmd         *cmd_head, *cmd_tail;
    _Atomic uint32_t fq_len;
    _Atomic uint32_t has_pinned_or_cmd;

    tr_actor        *lifo;           /* owner only: the actor woken last */
    uint32_t         lifo_streak;
    _Atomic int      sleeping;

    /* timers: owner only, except the id sequence */
    tr__timer      **heap;    uint32_t n_heap, cap_heap;   /* min-heap by deadline */
    tr__timer      **map;     uint32_t map_cap, map_used;  /* id -> timer, linear probing */
    _Atomic uint64_t timer_seq;
    uint64_t         next_ref;
    uint64_t         delivered;      /* owner only; published to st_delivered */

    /* message pool (pool.c) */
    tr_msg          *pool_local[TR__POOL_CLASSES];        /* owner only */
    uint32_t         pool_local_n[TR__POOL_CLASSES];
    _Atomic(tr_msg *) pool_returned[TR__POOL_CLASSES];    /* others push batches */
    tr__pool_batch  *pool_pending;   /* [owner * classes + class]: to hand back */

    /* stats, written by the owner only (relaxed) */
    _Atomic uint64_t st_delivered, st_turns, st_steals, st_wakeups, st_timers;
    char             pad_[TR__CACHELINE];
} tr_worker;

struct tr_runtime {
    tr_config        cfg;
    int              n_workers;
    tr_worker       *workers;

    /* actor table */
    tr_actor       **chunks;         /* cfg.max_actors / CHUNK_SIZE pointers */
    void           **chunk_mem;      /* what tr_malloc returned, before alignment */
    uint32_t         n_chunks_max;
    _Atomic uint32_t n_slots;        /* slots ever used; readers bound lookups by it */
    pthread_mutex_t  table_lock;
    uint32_t        *free_slots;     /* stack of free indices */
    uint32_t         n_free, cap_free;

    _Atomic uint64_t live;
    _Atomic uint64_t spawned, exited, dropped;
    _Atomic uint32_t rr;             /* round robin for foreign-thread wakeups */
    _Atomic int      n_sleeping;

    pthread_mutex_t  names_lock;     /* registry.c */
    struct tr__name **names;         /* hash buckets */
    uint32_t         names_cap;
    _Atomic uint32_t n_names;

    _Atomic int      stopping;       /* stop requested */
    _Atomic int      quit;           /* workers leave their loops */
    int              deadline_ms;
    uint64_t         stop_at_ms;
    int              running;        /* threads started and not yet joined */
    _Atomic(void *)  ext[TR_EXT_MAX];   /* tr_runtime_ext_set */
    void           (*ext_free[TR_EXT_MAX])(void *);
    pthread_mutex_t  stop_lock;
    pthread_cond_t   stop_cond;
};

/* ---- thread-local context ---- */
extern _Thread_local tr_worker *tr__cur_worker;
extern _Thread_local tr_actor  *tr__cur_actor;

/* ---- table.c ---- */
int       tr__table_init(tr_runtime *rt);
void      tr__table_close(tr_runtime *rt);
int       tr__slot_alloc(tr_runtime *rt, tr_actor **out);
void      tr__slot_release(tr_runtime *rt, tr_actor *a);
tr_actor *tr__lookup(tr_runtime *rt, tr_pid pid);
static inline tr_actor *tr__slot(tr_runtime *rt, uint32_t index)
{
    return &rt->chunks[index >> TR__CHUNK_SHIFT][index & (TR__CHUNK_SIZE - 1)];
}
static inline tr_pid tr__pid_make(uint32_t index, uint32_t gen)
{
    return ((uint64_t)gen << 32) | index;
}
static inline uint32_t tr__pid_index(tr_pid p) { return (uint32_t)p; }
static inline uint32_t tr__pid_gen(tr_pid p) { return (uint32_t)(p >> 32); }
/* The slot holds a live incarnation (exit moves the generation first). */
static inline bool tr__slot_live(tr_actor *a)
{
    return atomic_load(&a->state) != TR__DEAD &&
           atomic_load(&a->gen) == tr__pid_gen(a->self);
}
static inline tr_pid tr__actor_pid(tr_actor *a)
{
    return tr__pid_make(a->index, atomic_load_explicit(&a->gen, memory_order_relaxed));
}

/* ---- pool.c ---- */
tr_msg *tr__msg_alloc(size_t size);
void    tr__msg_release(tr_msg *m);
int     tr__pool_init(tr_worker *w);
void    tr__pool_flush(tr_worker *w);
void    tr__pool_close(tr_worker *w);

/* ---- alloc.c ---- */
bool    tr__alloc_injecting(void);
void    tr__alloc_note(long delta);

/* ---- message.c (mailbox) ---- */
void    tr__mb_init(tr_actor *a);
void    tr__mb_push(tr_actor *a, tr_msg *m);
tr_msg *tr__mb_pop(tr_actor *a);
bool    tr__mb_quiet(tr_actor *a);
bool    tr__mb_maybe_nonempty(tr_actor *a);
void    tr__msg_drop(tr_runtime *rt, tr_msg *m);

/* ---- actor.c ---- */
int  tr__deliver(tr_runtime *rt, tr_pid to, tr_msg *m);
void tr__run_actor(tr_worker *w, tr_actor *a);
void tr__actor_finish(tr_runtime *rt, tr_actor *a, int reason, bool run_terminate);
void tr__actor_set_exit(tr_actor *a, int reason);
void tr__invoke(tr_actor *a, tr_msg *m);
tr_actor_ext *tr__ext(tr_actor *a);
tr_pid tr__current_pid(void);

/* ---- signal.c ---- */
int  tr__signal(tr_runtime *rt, tr_pid to, int kind, tr_pid from, uint64_t ref,
                int32_t status);
void tr__handle_signal(tr_actor *a, tr_msg *m);
void tr__notify_exit(tr_actor *a, int reason);
void tr__sweep_dead(tr_actor *a);
int  tr__pids_add(tr_pid **v, uint32_t *n, uint32_t *cap, tr_pid p);
bool tr__pids_remove(tr_pid *v, uint32_t *n, tr_pid p);

/* ---- worker.c ---- */
int  tr__worker_init(tr_runtime *rt, tr_worker *w, int id);
void tr__worker_close(tr_worker *w);
int  tr__worker_start(tr_worker *w);
void tr__schedule(tr_runtime *rt, tr_actor *a);
void tr__requeue(tr_worker *w, tr_actor *a);
void tr__worker_wake(tr_worker *w);
void tr__worker_command(tr_worker *w, tr__cmd *c);
void tr__worker_run_commands(tr_worker *w);
void tr__wake_all(tr_runtime *rt);

/* ---- timer.c ---- */
int  tr__timer_add(tr_runtime *rt, tr_pid to, tr_msg *m, uint64_t ms, uint64_t period,
                   uint64_t *id);
void tr__timer_add_local(tr_worker *w, uint64_t id, tr_pid to, tr_msg *m,
                         uint64_t deadline, uint64_t period, tr__timer *t);
int  tr__timer_cancel_local(tr_worker *w, uint64_t id);
void tr__timers_close(tr_worker *w);

/* ---- call.c ---- */
uint64_t tr__new_ref(void);
int  tr__reply_status(tr_runtime *rt, tr_pid callee, tr_pid caller, uint64_t ref,
                      int32_t status);
bool tr__call_settle(tr_actor *a, tr_msg *m);
void tr__calls_cancel(tr_actor *a);

/* ---- registry.c ---- */
int  tr__registry_init(tr_runtime *rt);
void tr__registry_close(tr_runtime *rt);
void tr__registry_drop_pid(tr_runtime *rt, tr_pid pid);

/* ---- runtime.c ---- */
void tr__actor_exited(tr_runtime *rt);
uint64_t tr__now_ms(void);

#endif
