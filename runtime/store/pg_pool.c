/*
 * pg_pool.c — one worker's pool: the FIFO wait queue and its timeouts, picking a
 * connection (least loaded with room in its pipeline; an idle one for a
 * transaction), growing up to max, draining connections for waiting transactions,
 * retiring (idle timeout, lifetime, uses, changed settings), and reconnecting with
 * exponential backoff and jitter. While no connection works and none can be made
 * the pool is "down": queries fail at once, and a timer keeps trying in the
 * background until one gets through.
 *
 * Only the worker's own thread runs this, except the post queue (tr__pg_post).
 */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "pg_int.h"

#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 1000

static void trim(pg_pool *p);

void tr__pg_pool_refresh(pg_pool *p)
{
    tr_pg *pg = p->pg;
    unsigned g = atomic_load_explicit(&pg->cfg_gen, memory_order_acquire);
    if (g == p->cfg_gen && (p->kw || p->cfg_err[0]))
        return;
    pthread_mutex_lock(&pg->lock);
    tr_pg_config old = p->cfg;
    int url_changed = (p->url == NULL) != (pg->url == NULL) ||
                      (p->url && strcmp(p->url, pg->url) != 0);
    char *url = url_changed ? tr__pg_strdup(pg->url) : p->url;
    if (url_changed && pg->url && url == NULL) {
        pthread_mutex_unlock(&pg->lock);
        return;            /* out of memory: keep the old settings, try again later */
    }
    p->cfg = pg->cfg;
    g = atomic_load_explicit(&pg->cfg_gen, memory_order_relaxed);
    pthread_mutex_unlock(&pg->lock);
    if (url_changed) {
        tr_free(p->url);
        p->url = url;
    }
    p->cfg.url = p->url;
    if (url_changed || old.statement_timeout_ms != p->cfg.statement_timeout_ms ||
        p->kw == NULL) {
        p->conn_gen++;          /* older connections retire once idle */
        p->cfg_err[0] = '\0';
        tr__pg_conninfo(p);
    }
    if (url_changed) {          /* a new server: wait for it rather than fail fast */
        p->backoff_ms = 0;
        p->next_connect_at = 0;
        if (p->down) {
            p->down = 0;
            tr__pg_count(&p->n.down, -1);
        }
    }
    p->cfg_gen = g;
    trim(p);
}

/* err may be NULL (no memory even for it): the callback then gets neither. */
static void fail_op(pg_pool *p, pg_op *op, tr_pg_error *err)
{
    op->err = err;
    tr__pg_finish(p, op);
}

/* ---- the wait queue ---- */

static void on_wait_timer(uv_timer_t *t);

static void enqueue(pg_pool *p, pg_op *op, int timeout_ms)
{
    uint64_t now = uv_now(p->loop);
    op->deadline = timeout_ms > 0 ? now + (uint64_t)timeout_ms : UINT64_MAX;
    op->queued = 1;
    op->next = NULL;
    op->prev = p->wait_tail;
    if (p->wait_tail)
        p->wait_tail->next = op;
    else
        p->wait_head = op;
    p->wait_tail = op;
    p->nwait++;
    if (op->kind == OP_ACQUIRE)
        p->nwait_acq++;
    tr__pg_count(&p->n.waiting, 1);
    if (op->deadline != UINT64_MAX && (p->wait_due == 0 || op->deadline < p->wait_due)) {
        p->wait_due = op->deadline;
        uv_timer_start(&p->wait_timer, on_wait_timer, op->deadline - now, 0);
    }
}

static void dequeue(pg_pool *p, pg_op *op)
{
    if (op->prev)
        op->prev->next = op->next;
    else
        p->wait_head = op->next;
    if (op->next)
        op->next->prev = op->prev;
    else
        p->wait_tail = op->prev;
    op->next = op->prev = NULL;
    op->queued = 0;
    p->nwait--;
    if (op->kind == OP_ACQUIRE)
        p->nwait_acq--;
    tr__pg_count(&p->n.waiting, -1);
}

/* Fails every waiter with copies of err (borrowed). */
static void fail_waiters(pg_pool *p, const tr_pg_error *err)
{
    pg_op *op;
    while ((op = p->wait_head)) {
        dequeue(p, op);
        fail_op(p, op, tr__pg_error_copy(err));
    }
}

static void on_wait_timer(uv_timer_t *t)
{
    pg_pool *p = t->data;
    tr__pg_enter(p);
    uint64_t now = uv_now(p->loop), due = 0;
    p->wait_due = 0;
    for (pg_op *op = p->wait_head, *next; op; op = next) {
        next = op->next;
        if (op->deadline <= now) {
            dequeue(p, op);
            tr__pg_count(&p->n.acquire_timeouts, 1);
            fail_op(p, op, tr__pg_error_new("08000", 1, "timeout: no connection available "
                                            "within %d ms (%d connections, %d waiting)",
                                            (int)((uv_hrtime() - op->t0_ns) / 1000000),
                                            p->nconns, p->nwait + 1));
        } else if (op->deadline != UINT64_MAX && (due == 0 || op->deadline < due)) {
            due = op->deadline;
        }
    }
    if (due) {
        p->wait_due = due;
        uv_timer_start(&p->wait_timer, on_wait_timer, due - now, 0);
    }
    tr__pg_leave(p);
}

/* ---- picking and growing ---- */

static int usable(const pg_pool *p, const tr_pg_conn *c)
{
    return c->state == CONN_READY && !c->closed && !c->pinned && !c->retiring &&
           c->gen == p->conn_gen &&
           (p->cfg.max_uses == 0 || c->uses < (uint64_t)p->cfg.max_uses);
}

/* Whether c is busy: its oldest query in flight was submitted busy_after_ms ago or
 * more (a slow query, or a queue too deep for the server to keep up). now: uv_hrtime. */
static int busy(const pg_pool *p, const tr_pg_conn *c, uint64_t now)
{
    if (c->load == 0)
        return 0;
    uint64_t limit = (uint64_t)p->cfg.busy_after_ms * 1000000u;
    for (const pg_seg *s = c->seg_head; s; s = s->next)
        if (s->op)
            return now - s->op->t0_ns >= limit;
    return limit == 0;
}

/*
 * Where a query goes: the first connection (in the pool's order) with room in its
 * pipeline that is not busy, so that the queries of a light load pack onto few
 * connections and the others go idle and close (idle_timeout); when every one is
 * busy, a new connection (NULL: the query waits for the one maybe_grow opens, or for
 * a busy one to make progress), or at max the least loaded busy one. NULL also when
 * every connection is full.
 */
static tr_pg_conn *pick_conn(pg_pool *p)
{
    tr_pg_conn *fallback = NULL;
    uint64_t now = uv_hrtime();
    for (tr_pg_conn *c = p->conns; c; c = c->next) {
        if (!usable(p, c) || c->draining || c->load >= p->cfg.pipeline_depth)
            continue;
        if (!busy(p, c, now))
            return c;
        if (fallback == NULL || c->load < fallback->load)
            fallback = c;
    }
    if (fallback && p->nconns < p->cfg.max && !p->down)
        return NULL;
    return fallback;
}

/* A connection with nothing in flight, for a transaction; drained ones first. */
static tr_pg_conn *pick_idle(pg_pool *p)
{
    tr_pg_conn *any = NULL;
    for (tr_pg_conn *c = p->conns; c; c = c->next)
        if (usable(p, c) && c->load == 0) {
            if (c->draining)
                return c;
            any = any ? any : c;
        }
    return any;
}

static void on_retry(uv_timer_t *t);

static void retry_in(pg_pool *p, uint64_t ms)
{
    uv_timer_start(&p->retry_timer, on_retry, ms ? ms : 1, 0);
    p->retry_armed = 1;
}

static void connect_failure(pg_pool *p, const tr_pg_error *why);

static void link_conn(pg_pool *p, tr_pg_conn *c)
{
    c->prev = NULL;
    c->next = p->conns;
    if (p->conns)
        p->conns->prev = c;
    p->conns = c;
}

static void unlink_conn(pg_pool *p, tr_pg_conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        p->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->next = c->prev = NULL;
}

static int open_conn(pg_pool *p)
{
    tr_pg_error *err = NULL;
    tr_pg_conn *c = NULL;
    if (p->kw == NULL)
        err = tr__pg_error_new("08001", 1, "cannot connect: %s",
                               p->cfg_err[0] ? p->cfg_err : "no connection settings");
    else
        c = tr__pg_conn_open(p, &err);
    if (c == NULL) {
        connect_failure(p, err);
        tr_pg_error_free(err);
        return -1;
    }
    link_conn(p, c);
    p->nconns++;
    p->nconnecting++;
    tr__pg_count(&p->n.connecting, 1);
    tr__pg_conn_start(c);
    return 0;
}

/* Opens connections while there is demand the ready ones cannot take: acquires with
 * no idle connection, queries with every connection busy, fewer than min. */
static void maybe_grow(pg_pool *p)
{
    if (p->closing || p->down)
        return;
    uint64_t now = uv_now(p->loop), now_ns = uv_hrtime();
    while (p->nconns < p->cfg.max) {
        if (now < p->next_connect_at) {
            if (!p->retry_armed)
                retry_in(p, p->next_connect_at - now);
            return;
        }
        int idle = 0, nfree = 0, avail = 0;
        for (tr_pg_conn *c = p->conns; c; c = c->next)
            if (usable(p, c) && !c->draining) {
                avail++;
                idle += c->load == 0;
                nfree += c->load < p->cfg.pipeline_depth && !busy(p, c, now_ns);
            }
        int queries = p->nwait - p->nwait_acq;
        int want = (p->nwait_acq > 0 && idle == 0 && p->nconnecting < p->nwait_acq) ||
                   (nfree == 0 && p->nconnecting == 0 && (queries > 0 || avail > 0)) ||
                   p->nconns < p->cfg.min;
        if (!want || open_conn(p) < 0)
            return;
    }
}

/* With every connection in use and transactions waiting, stop giving new queries to
 * as many connections as transactions wait, so that they drain and can be pinned. */
static void manage_drains(pg_pool *p)
{
    int want = p->nconns >= p->cfg.max ? p->nwait_acq : 0, have = 0;
    for (tr_pg_conn *c = p->conns; c; c = c->next)
        if (c->draining) {
            if (have >= want || !usable(p, c))
                c->draining = 0;
            else
                have++;
        }
    while (have < want) {
        tr_pg_conn *best = NULL;
        for (tr_pg_conn *c = p->conns; c; c = c->next)
            if (usable(p, c) && !c->draining && (best == NULL || c->load < best->load))
                best = c;
        if (best == NULL)
            return;
        best->draining = 1;
        have++;
    }
}

static void pin(pg_pool *p, tr_pg_conn *c, pg_op *op)
{
    c->pinned = 1;
    c->draining = 0;
    op->conn = c;
    tr__pg_count(&p->n.pinned, 1);
    tr__pg_conn_update_idle(c);
    tr__pg_finish(p, op);
}

/* Serves the wait queue in order, as far as connections allow (a transaction that
 * waits for an idle connection does not hold up queries that can pipeline). */
static void dispatch(pg_pool *p)
{
    if (p->dispatching) {
        p->redispatch = 1;
        return;
    }
    p->dispatching = 1;
    do {
        p->redispatch = 0;
        int qblocked = 0, ablocked = 0;
        for (;;) {
            pg_op *op = p->wait_head;
            while (op && (op->kind == OP_ACQUIRE ? ablocked : qblocked))
                op = op->next;
            if (op == NULL)
                break;
            tr_pg_conn *c = op->kind == OP_ACQUIRE ? pick_idle(p) : pick_conn(p);
            if (c == NULL) {
                *(op->kind == OP_ACQUIRE ? &ablocked : &qblocked) = 1;
                continue;
            }
            dequeue(p, op);
            if (op->kind == OP_ACQUIRE)
                pin(p, c, op);
            else
                tr__pg_conn_send(c, op);
        }
        if (p->nwait_acq > 0 || p->nwait > 0)
            manage_drains(p);
        if (p->nwait > 0)
            maybe_grow(p);
    } while (p->redispatch);
    p->dispatching = 0;
}

/* ---- connection events (from pg_conn.c) ---- */

void tr__pg_conn_update_idle(tr_pg_conn *c)
{
    int idle = !c->closed && c->state == CONN_READY && !c->pinned && c->load == 0;
    if (idle != c->counted_idle) {
        c->counted_idle = (uint8_t)idle;
        tr__pg_count(&c->pool->n.idle, idle ? 1 : -1);
    }
}

void tr__pg_conn_ready(pg_pool *p, tr_pg_conn *c)
{
    p->nconnecting--;
    p->nready++;
    tr__pg_count(&p->n.connecting, -1);
    tr__pg_count(&p->n.connections, 1);
    tr__pg_count(&p->n.connects, 1);
    p->backoff_ms = 0;
    p->next_connect_at = 0;
    if (p->down) {
        p->down = 0;
        tr__pg_count(&p->n.down, -1);
    }
    c->idle_since = uv_now(p->loop);
    tr__pg_conn_update_idle(c);
    dispatch(p);
}

/* Takes c out of the pool's accounts (it is closed already). */
static void conn_removed(pg_pool *p, tr_pg_conn *c, int was_connecting, int was_ready)
{
    unlink_conn(p, c);
    p->nconns--;
    if (was_connecting) {
        p->nconnecting--;
        tr__pg_count(&p->n.connecting, -1);
    } else if (was_ready) {
        p->nready--;
        tr__pg_count(&p->n.connections, -1);
    }
    c->draining = 0;
    if (c->pinned) {            /* its transaction still holds it: freed on release */
        c->next = p->zombies;
        if (p->zombies)
            p->zombies->prev = c;
        p->zombies = c;
        c->prev = NULL;
        c->zombie = 1;
    }
}

static void close_conn(pg_pool *p, tr_pg_conn *c, const char *why)
{
    int connecting = c->state == CONN_CONNECTING, ready = c->state == CONN_READY;
    tr_pg_error *e = tr__pg_error_new("08006", 1, "%s", why);
    tr__pg_conn_close(c, e);
    tr_pg_error_free(e);
    conn_removed(p, c, connecting, ready);
}

/* Closes idle connections above max (after max was lowered). */
static void trim(pg_pool *p)
{
    for (tr_pg_conn *c = p->conns, *next; c && p->nconns > p->cfg.max; c = next) {
        next = c->next;
        if (c->state == CONN_READY && !c->pinned && c->load == 0)
            close_conn(p, c, "connection closed: the pool shrank");
    }
}

static void connect_failure(pg_pool *p, const tr_pg_error *why)
{
    tr__pg_count(&p->n.connect_failures, 1);
    p->backoff_ms = p->backoff_ms ? p->backoff_ms * 2 : BACKOFF_MIN_MS;
    if (p->backoff_ms > BACKOFF_MAX_MS)
        p->backoff_ms = BACKOFF_MAX_MS;
    p->rng ^= p->rng << 13;
    p->rng ^= p->rng >> 7;
    p->rng ^= p->rng << 17;
    uint64_t delay = p->backoff_ms / 2 + p->rng % (p->backoff_ms / 2 + 1);   /* jitter */
    p->next_connect_at = uv_now(p->loop) + delay;
    if (p->nready == 0 && !p->closing) {
        /* Nothing works: the database is unavailable. Fail fast until a retry in
         * the background gets through. */
        if (!p->down) {
            p->down = 1;
            tr__pg_count(&p->n.down, 1);
        }
        const char *m = why && why->field[TR_PG_E_MESSAGE] ? why->field[TR_PG_E_MESSAGE]
                                                            : "cannot connect";
        snprintf(p->down_msg, sizeof p->down_msg, "%s", m);
        if (why)
            fail_waiters(p, why);
    }
    if (!p->closing)
        retry_in(p, delay);
}

void tr__pg_conn_failed(pg_pool *p, tr_pg_conn *c, const tr_pg_error *why, int was_ready)
{
    int connecting = c->state == CONN_CONNECTING;
    tr__pg_conn_close(c, why);
    conn_removed(p, c, connecting, was_ready && !connecting);
    if (connecting) {
        connect_failure(p, why);
    } else {
        tr__pg_count(&p->n.lost, 1);
        if (p->nwait > 0 || p->nconns < p->cfg.min)
            maybe_grow(p);       /* reconnect now: the server may still be there */
    }
    dispatch(p);
}

static void unpin(pg_pool *p, tr_pg_conn *c)
{
    c->pinned = 0;
    c->rollback_sent = 0;
    c->release_pending = 0;
    tr__pg_count(&p->n.pinned, -1);
    c->idle_since = uv_now(p->loop);
    tr__pg_conn_update_idle(c);
}

static void finish_release(pg_pool *p, tr_pg_conn *c)
{
    c->release_pending = 0;
    PGTransactionStatusType ts = PQtransactionStatus(c->pq);
    if (ts == PQTRANS_IDLE) {
        unpin(p, c);
        tr__pg_capacity(p, c);
        return;
    }
    if ((ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR) && !c->rollback_sent) {
        static const tr_pg_query rb = { "ROLLBACK", 8, NULL, 0, 0 };
        pg_op *op = tr__pg_op_new(&rb);
        if (op) {
            op->internal = 1;
            c->rollback_sent = 1;
            c->release_pending = 1;
            tr__pg_conn_send(c, op);
            return;
        }
    }
    /* Never back to the pool unclean: close it. */
    unpin(p, c);
    close_conn(p, c, "connection closed: not clean after its transaction");
    dispatch(p);
}

void tr__pg_capacity(pg_pool *p, tr_pg_conn *c)
{
    if (c->closed)
        return;
    if (c->release_pending && c->load == 0) {
        finish_release(p, c);
        return;
    }
    if (c->load == 0 && !c->pinned && c->state == CONN_READY) {
        c->idle_since = uv_now(p->loop);
        if (!usable(p, c) || p->nconns > p->cfg.max) {
            close_conn(p, c, "connection retired");
            dispatch(p);
            return;
        }
    }
    if (p->wait_head)
        dispatch(p);
}

void tr__pg_conn_gone(pg_pool *p, tr_pg_conn *c)
{
    if (c->pinned)
        return;          /* freed when its transaction releases it */
    if (c->zombie) {
        if (c->prev)
            c->prev->next = c->next;
        else
            p->zombies = c->next;
        if (c->next)
            c->next->prev = c->prev;
    }
    tr_free(c);
}

/* ---- timers ---- */

static void on_retry(uv_timer_t *t)
{
    pg_pool *p = t->data;
    p->retry_armed = 0;
    tr__pg_enter(p);
    tr__pg_pool_refresh(p);
    if (p->down) {
        if (p->nconnecting == 0)
            open_conn(p);        /* a probe: succeeds, or backs off further */
    } else {
        maybe_grow(p);
    }
    tr__pg_leave(p);
}

static void on_maint(uv_timer_t *t)
{
    pg_pool *p = t->data;
    tr__pg_enter(p);
    tr__pg_pool_refresh(p);
    uint64_t now = uv_now(p->loop);
    for (tr_pg_conn *c = p->conns, *next; c; c = next) {
        next = c->next;
        if (c->state != CONN_READY || c->pinned)
            continue;
        if (p->cfg.max_lifetime_ms > 0 && now - c->created >= (uint64_t)p->cfg.max_lifetime_ms)
            c->retiring = 1;
        if (c->load > 0)
            continue;
        if (!usable(p, c))
            close_conn(p, c, "connection retired");
        else if (p->cfg.idle_timeout_ms > 0 && p->nconns > p->cfg.min &&
                 now - c->idle_since >= (uint64_t)p->cfg.idle_timeout_ms)
            close_conn(p, c, "connection closed after its idle timeout");
    }
    if (!p->down)
        maybe_grow(p);
    dispatch(p);
    tr__pg_leave(p);
}

/* ---- pools ---- */

static void on_async(uv_async_t *a);

static pg_pool *pool_new(tr_pg *pg, int w)
{
    pg_pool *p = tr_malloc(sizeof *p);
    if (p == NULL)
        return NULL;
    memset(p, 0, sizeof *p);
    p->pg = pg;
    p->worker = w;
    p->loop = tr_worker_loop(pg->rt, w);
    if (pthread_mutex_init(&p->post_lock, NULL) != 0) {
        tr_free(p);
        return NULL;
    }
    p->rng = (uv_hrtime() ^ ((uint64_t)(uintptr_t)p << 7) ^ (uint64_t)w) | 1;
    uv_timer_init(p->loop, &p->wait_timer);
    uv_timer_init(p->loop, &p->maint_timer);
    uv_timer_init(p->loop, &p->retry_timer);
    uv_async_init(p->loop, &p->async, on_async);
    uv_prepare_init(p->loop, &p->uncork);
    p->uncork.data = p;
    p->wait_timer.data = p->maint_timer.data = p->retry_timer.data = p;
    p->async.data = p;
    p->cfg_gen = atomic_load(&pg->cfg_gen) - 1;    /* refresh now */
    tr__pg_pool_refresh(p);
    uv_timer_start(&p->maint_timer, on_maint, 1000, 1000);
    return p;
}

/*
 * Coalescing: a connection's socket is corked (TCP_CORK) when a query is sent on it,
 * and here, in the prepare phase right before the loop polls, every corked socket
 * sends what it holds in one segment. The server then reads the queries of many
 * requests in one go and is woken once for them: perf showed 20% of a worker's time
 * in __send's wake-ups and task switches on /db, one per query (libpq 15 flushes at
 * every PQpipelineSync). /db went from 36k to 44k req/s with it (wrk -c64, 2 workers,
 * Postgres on the same 2 cores).
 */
static void on_uncork(uv_prepare_t *h)
{
    pg_pool *p = h->data;
    for (tr_pg_conn *c = p->conns; c; c = c->next) {
        if (c->corked) {
            int off = 0;
            c->corked = 0;
            if (!c->closed)
                (void)setsockopt(c->fd, IPPROTO_TCP, TCP_CORK, &off, sizeof off);
        }
    }
    uv_prepare_stop(h);
    p->uncork_armed = 0;
}

void tr__pg_pool_arm_uncork(pg_pool *p)
{
    if (!p->uncork_armed && !p->closing) {
        uv_prepare_start(&p->uncork, on_uncork);
        p->uncork_armed = 1;
    }
}

/* The calling worker's pool, made on first use (only its own thread makes it). */
pg_pool *tr__pg_pool_here(tr_pg *pg)
{
    int w = tr_current_worker(pg->rt);
    if (w < 0 || w >= pg->nworkers || pg->closing)
        return NULL;
    pg_pool *p = atomic_load_explicit(&pg->pools[w], memory_order_acquire);
    if (p == NULL && (p = pool_new(pg, w)) != NULL)
        atomic_store_explicit(&pg->pools[w], p, memory_order_release);
    return p;
}

void tr__pg_pool_query(pg_pool *p, pg_op *op)
{
    if (p->closing) {
        fail_op(p, op, tr__pg_error_new("08006", 1, "the runtime is stopping"));
        return;
    }
    if (p->down && p->nready == 0) {
        fail_op(p, op, tr__pg_error_new("08001", 1, "%s", p->down_msg));
        return;
    }
    if (p->nwait == p->nwait_acq) {        /* no query waits before this one */
        tr_pg_conn *c = pick_conn(p);
        if (c) {
            tr__pg_conn_send(c, op);
            if (c->load > 1)               /* no idle connection was left */
                maybe_grow(p);
            return;
        }
    }
    enqueue(p, op, p->cfg.acquire_timeout_ms);
    maybe_grow(p);
}

/* An op for a pinned connection, or a release, on the connection's worker. */
static void run_posted(pg_pool *p, pg_op *op)
{
    tr_pg_conn *c = op->conn;
    if (op->kind == OP_RELEASE) {
        tr__pg_op_free(op);
        if (!c->pinned)
            return;
        if (c->closed) {
            c->pinned = 0;
            tr__pg_count(&p->n.pinned, -1);
            if (c->handles == 0)
                tr__pg_conn_gone(p, c);
        } else if (c->load > 0) {
            c->release_pending = 1;
        } else {
            finish_release(p, c);
        }
        return;
    }
    if (c->closed || p->closing) {
        fail_op(p, op, tr__pg_error_new("08006", 1, "connection lost"));
        return;
    }
    tr__pg_conn_send(c, op);
}

/* Runs op on its pinned connection's worker: right here when that is this thread
 * and nothing posted earlier is still queued for it, else through the post queue. */
void tr__pg_post(pg_pool *p, pg_op *op)
{
    if (!p->closing && tr_current_worker(p->pg->rt) == p->worker) {
        pthread_mutex_lock(&p->post_lock);
        int empty = p->post_head == NULL;
        pthread_mutex_unlock(&p->post_lock);
        if (empty) {
            tr__pg_enter(p);
            run_posted(p, op);
            tr__pg_leave(p);
            return;
        }
    }
    pthread_mutex_lock(&p->post_lock);
    op->next = NULL;
    if (p->post_tail)
        p->post_tail->next = op;
    else
        p->post_head = op;
    p->post_tail = op;
    pthread_mutex_unlock(&p->post_lock);
    uv_async_send(&p->async);
}

static pg_op *take_posts(pg_pool *p)
{
    pthread_mutex_lock(&p->post_lock);
    pg_op *list = p->post_head;
    p->post_head = p->post_tail = NULL;
    pthread_mutex_unlock(&p->post_lock);
    return list;
}

static void on_async(uv_async_t *a)
{
    pg_pool *p = a->data;
    tr__pg_enter(p);
    for (pg_op *op = take_posts(p), *next; op; op = next) {
        next = op->next;
        op->next = NULL;
        run_posted(p, op);
    }
    tr__pg_leave(p);
}

void tr__pg_pool_free(pg_pool *p)
{
    p->closing = 1;
    tr__pg_enter(p);
    tr_pg_error *e = tr__pg_error_new("08006", 1, "the runtime is stopping");
    for (pg_op *op = take_posts(p), *next; op; op = next) {
        next = op->next;
        op->next = NULL;
        if (op->kind == OP_RELEASE) {
            if (op->conn->pinned && op->conn->closed) {
                op->conn->pinned = 0;
                if (op->conn->handles == 0)
                    tr__pg_conn_gone(p, op->conn);
            } else {
                op->conn->pinned = 0;
            }
            tr__pg_op_free(op);
        } else {
            fail_op(p, op, tr__pg_error_copy(e));
        }
    }
    fail_waiters(p, e);
    while (p->conns) {
        tr_pg_conn *c = p->conns;
        c->pinned = 0;
        tr__pg_conn_close(c, e);
        conn_removed(p, c, c->state == CONN_CONNECTING, 0);
    }
    tr_pg_error_free(e);
    tr__pg_leave(p);
    uv_close((uv_handle_t *)&p->wait_timer, NULL);
    uv_close((uv_handle_t *)&p->maint_timer, NULL);
    uv_close((uv_handle_t *)&p->retry_timer, NULL);
    uv_close((uv_handle_t *)&p->async, NULL);
    uv_close((uv_handle_t *)&p->uncork, NULL);
    for (tr_pg_conn *c = p->zombies; c; c = c->next)
        c->pinned = 0;           /* nobody releases them now: free when closed */
    uv_run(p->loop, UV_RUN_NOWAIT);
    while (p->resolving > 0)     /* a name lookup that had started: its callback frees */
        uv_run(p->loop, UV_RUN_ONCE);
    while (p->zombies) {         /* closed long ago, still pinned: free them here */
        tr_pg_conn *c = p->zombies;
        p->zombies = c->next;
        if (c->handles == 0)
            tr_free(c);
    }
    pthread_mutex_destroy(&p->post_lock);
    tr_free(p->kw);
    tr_free(p->kwbuf);
    tr_free(p->url);
    tr_free(p);
}


/* An acquire: an idle connection now, or a place in the queue (with a connection
 * opened or drained for it). */
void tr__pg_pool_acquire(pg_pool *p, pg_op *op, int timeout_ms)
{
    if (p->down && p->nready == 0) {
        fail_op(p, op, tr__pg_error_new("08001", 1, "%s", p->down_msg));
        return;
    }
    tr_pg_conn *c = p->nwait_acq == 0 ? pick_idle(p) : NULL;
    if (c) {
        pin(p, c, op);
        return;
    }
    enqueue(p, op, timeout_ms < 0 ? p->cfg.acquire_timeout_ms : timeout_ms);
    maybe_grow(p);
    manage_drains(p);
}
