/*
 * chunks.c — a per-runtime cache of compiled script files.
 *
 * Spawning a Lua actor compiles its script; ten thousand actors of one script would
 * compile it ten thousand times. The first compilation is kept as lua_dump output
 * (debug information included, so errors and tracebacks keep their file:line) and
 * later loads of the same file undump it, which skips the file's open and read, the
 * lexer, the parser and their garbage.
 *
 * Safety: the bytes come only from lua_dump of a chunk this file compiled from text a
 * moment before, in this process; they are loaded with mode "b" here and nowhere else.
 * Scripts still load text only: they never see the bytes, and nothing they write can
 * become an entry.
 *
 * Freshness: an entry is found by path and used only when the file's identity now
 * (st_dev, st_ino, st_size, st_mtim, st_ctim) is the one it was compiled from; else it
 * is dropped and the file compiled again. Timestamps have a granularity (a clock tick,
 * up to a second or two on some filesystems), so a file is cached only once its mtime
 * is SETTLE_NS old: an edit after that gets a different mtime.
 *
 * Threads: one mutex around a chained hash table and an LRU list. The lock is never
 * held while Lua runs: a hit takes a reference to the entry's bytes and undumps them
 * after unlocking.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <lauxlib.h>

#include "chunks.h"

#define MAX_ENTRIES 256
#define MAX_BYTES   ((size_t)16 << 20)
#define MAX_ONE     (MAX_BYTES / 8)          /* a bigger chunk is not cached */
#define N_BUCKETS   512                      /* a power of two */
#define SETTLE_NS   1000000000LL

/* The dumped bytes, shared by the cache and the loads under way. */
typedef struct blob {
    atomic_int    refs;      /* the cache's own, plus one per load in progress */
    size_t        len;
    unsigned char data[];
} blob;

typedef struct ident {
    dev_t           dev;
    ino_t           ino;
    off_t           size;
    struct timespec mtime, ctime;
} ident;

typedef struct entry {
    struct entry *next;             /* in its bucket */
    struct entry *newer, *older;    /* the LRU list */
    uint64_t      hash;
    ident         id;
    blob         *code;
    char          path[];
} entry;

typedef struct chunks {
    pthread_mutex_t lock;
    entry          *bucket[N_BUCKETS];
    entry          *newest, *oldest;
    tr_chunks_stats st;
} chunks;

static void blob_release(blob *b)
{
    if (atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1)
        tr_free(b);
}

static uint64_t hash_path(const char *s)
{
    uint64_t h = 14695981039346656037u;   /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211u;
    return h;
}

static ident ident_of(const struct stat *st)
{
    ident id;
    id.dev = st->st_dev;
    id.ino = st->st_ino;
    id.size = st->st_size;
    id.mtime = st->st_mtim;
    id.ctime = st->st_ctim;
    return id;
}

static bool ident_eq(const ident *a, const ident *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec &&
           a->ctime.tv_sec == b->ctime.tv_sec && a->ctime.tv_nsec == b->ctime.tv_nsec;
}

/* ---- the table (every function below takes the lock held) ---- */

static entry **slot_of(chunks *c, uint64_t hash, const char *path)
{
    entry **p = &c->bucket[hash & (N_BUCKETS - 1)];
    while (*p && ((*p)->hash != hash || strcmp((*p)->path, path) != 0))
        p = &(*p)->next;
    return p;
}

static void lru_unlink(chunks *c, entry *e)
{
    if (e->newer)
        e->newer->older = e->older;
    else
        c->newest = e->older;
    if (e->older)
        e->older->newer = e->newer;
    else
        c->oldest = e->newer;
    e->newer = e->older = NULL;
}

static void lru_push(chunks *c, entry *e)
{
    e->newer = NULL;
    e->older = c->newest;
    if (c->newest)
        c->newest->newer = e;
    else
        c->oldest = e;
    c->newest = e;
}

/* Unlinks the entry at *p and frees it (its bytes live on while a load holds them). */
static void drop(chunks *c, entry **p)
{
    entry *e = *p;
    *p = e->next;
    lru_unlink(c, e);
    c->st.entries--;
    c->st.bytes -= e->code->len;
    c->st.evictions++;
    blob_release(e->code);
    tr_free(e);
}

static void drop_oldest(chunks *c)
{
    entry *e = c->oldest;
    drop(c, slot_of(c, e->hash, e->path));
}

/* ---- the cache's life ---- */

static void chunks_free(void *p)
{
    chunks *c = p;
    while (c->oldest)
        drop_oldest(c);
    pthread_mutex_destroy(&c->lock);
    tr_free(c);
}

/* rt's cache, created when create is set and there is none yet; NULL without one. */
static chunks *chunks_of(tr_runtime *rt, bool create)
{
    chunks *c = tr_runtime_ext(rt, TR_EXT_LUA);
    if (c || !create)
        return c;
    c = tr_malloc(sizeof(*c));
    if (c == NULL)
        return NULL;
    memset(c, 0, sizeof(*c));
    if (pthread_mutex_init(&c->lock, NULL) != 0) {
        tr_free(c);
        return NULL;
    }
    if (tr_runtime_ext_set(rt, TR_EXT_LUA, c, chunks_free) != 0) {
        chunks_free(c);   /* another thread set it first (or the slot is bad) */
        c = tr_runtime_ext(rt, TR_EXT_LUA);
    }
    return c;
}

/* ---- lookup and store ---- */

/* The bytes cached for path with identity id, with a reference the caller releases;
 * NULL on a miss (a stale entry is dropped then). Counts the hit or miss. */
static blob *lookup(chunks *c, uint64_t hash, const char *path, const ident *id)
{
    blob *b = NULL;
    pthread_mutex_lock(&c->lock);
    entry **p = slot_of(c, hash, path);
    if (*p && ident_eq(&(*p)->id, id)) {
        entry *e = *p;
        if (c->newest != e) {
            lru_unlink(c, e);
            lru_push(c, e);
        }
        b = e->code;
        atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
        c->st.hits++;
    } else {
        if (*p)
            drop(c, p);
        c->st.misses++;
    }
    pthread_mutex_unlock(&c->lock);
    return b;
}

/* Adds code (taking the caller's reference) for path with identity id, unless an
 * entry for this very file is there already. */
static void store(chunks *c, uint64_t hash, const char *path, const ident *id, blob *code)
{
    size_t plen = strlen(path);
    entry *e = tr_malloc(sizeof(*e) + plen + 1);
    if (e == NULL) {
        blob_release(code);
        return;
    }
    memset(e, 0, sizeof(*e));
    e->hash = hash;
    e->id = *id;
    e->code = code;
    memcpy(e->path, path, plen + 1);
    pthread_mutex_lock(&c->lock);
    entry **p = slot_of(c, hash, path);
    if (*p && ident_eq(&(*p)->id, id)) {   /* another load stored it meanwhile */
        pthread_mutex_unlock(&c->lock);
        blob_release(code);
        tr_free(e);
        return;
    }
    if (*p)
        drop(c, p);
    while (c->oldest && (c->st.entries >= MAX_ENTRIES || c->st.bytes + code->len > MAX_BYTES))
        drop_oldest(c);
    p = slot_of(c, hash, path);   /* the drops may have moved the bucket's end */
    *p = e;
    lru_push(c, e);
    c->st.entries++;
    c->st.bytes += code->len;
    c->st.stores++;
    pthread_mutex_unlock(&c->lock);
}

/* ---- dump ---- */

typedef struct dumpbuf {
    blob  *b;
    size_t cap;
} dumpbuf;

static int dump_writer(lua_State *L, const void *p, size_t sz, void *ud)
{
    (void)L;
    dumpbuf *d = ud;
    size_t len = d->b ? d->b->len : 0;
    if (len + sz > MAX_ONE)
        return 1;
    if (d->b == NULL || len + sz > d->cap) {
        size_t cap = d->cap ? d->cap : 1024;
        while (cap < len + sz)
            cap *= 2;
        blob *nb = tr_realloc(d->b, sizeof(blob) + cap);
        if (nb == NULL)
            return 1;
        if (d->b == NULL)
            nb->len = 0;
        d->b = nb;
        d->cap = cap;
    }
    memcpy(d->b->data + d->b->len, p, sz);
    d->b->len += sz;
    return 0;
}

/* lua_dump of the function on top of L (debug information kept), as a blob with one
 * reference; NULL when it cannot be had (out of memory, too big). */
static blob *dump_top(lua_State *L)
{
    dumpbuf d = { NULL, 0 };
    if (lua_dump(L, dump_writer, &d, 0) != 0 || d.b == NULL) {
        tr_free(d.b);
        return NULL;
    }
    blob *b = tr_realloc(d.b, sizeof(blob) + d.b->len);   /* give back the slack */
    if (b == NULL)
        b = d.b;
    atomic_init(&b->refs, 1);
    return b;
}

/* ---- the entry point ---- */

static int64_t ts_ns(struct timespec t)
{
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

int tr_chunks_load(tr_runtime *rt, lua_State *L, const char *path)
{
    struct stat st;
    if (rt == NULL || stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return luaL_loadfilex(L, path, "t");   /* its own error message, if any */
    ident id = ident_of(&st);
    uint64_t hash = hash_path(path);
    chunks *c = chunks_of(rt, true);
    blob *b = c ? lookup(c, hash, path, &id) : NULL;
    if (b) {
        int rc = luaL_loadbufferx(L, (const char *)b->data, b->len, path, "b");
        blob_release(b);
        return rc;
    }
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);   /* before the read: see SETTLE_NS */
    int rc = luaL_loadfilex(L, path, "t");
    if (rc != LUA_OK || c == NULL || ts_ns(st.st_mtim) > ts_ns(now) - SETTLE_NS ||
        st.st_size > (off_t)MAX_ONE)
        return rc;
    /* The file must not have changed while it was read: what was compiled is then
     * what id names. */
    struct stat after;
    if (stat(path, &after) != 0)
        return rc;
    ident id2 = ident_of(&after);
    if (!ident_eq(&id, &id2))
        return rc;
    blob *code = dump_top(L);
    if (code)
        store(c, hash, path, &id, code);
    return rc;
}

void tr_chunks_stats_get(tr_runtime *rt, tr_chunks_stats *out)
{
    memset(out, 0, sizeof(*out));
    chunks *c = rt ? chunks_of(rt, false) : NULL;
    if (c == NULL)
        return;
    pthread_mutex_lock(&c->lock);
    *out = c->st;
    pthread_mutex_unlock(&c->lock);
}
