/* chunks.h — the compiled forms of Lua script files, cached per runtime (runtime/lua). */
#ifndef TR_LUA_CHUNKS_H
#define TR_LUA_CHUNKS_H

#include <stddef.h>
#include <stdint.h>
#include <lua.h>

#include "troupe.h"

/*
 * Loads the Lua source file at path as text, as luaL_loadfilex(L, path, "t") does, and
 * pushes the chunk; or returns luaL_loadfilex's error status with its message pushed.
 *
 * With rt non-NULL, the chunk may come instead from rt's cache: the lua_dump (debug
 * information kept) of an earlier text compilation of the same file, found by path and
 * checked against the file's identity now (device, inode, size, mtime and ctime to the
 * nanosecond), so an edited file is compiled afresh. Only text this function compiled
 * itself is ever cached, and the cached bytes reach no script: nothing else loads them.
 * A file modified within the last second is not cached (its mtime could still be shared
 * with a later edit on a filesystem with coarse timestamps). The cache lives in rt's
 * TR_EXT_LUA slot, created on first use and freed with rt; it keeps at most 256 chunks
 * and 16 MB, dropping the least recently used. Any thread.
 */
int tr_chunks_load(tr_runtime *rt, lua_State *L, const char *path);

typedef struct tr_chunks_stats {
    uint64_t hits;        /* loads served from the cache */
    uint64_t misses;      /* loads that compiled the file */
    uint64_t stores;      /* compiled chunks added */
    uint64_t evictions;   /* chunks dropped: stale (the file changed) or over a bound */
    size_t   entries;     /* chunks held now */
    size_t   bytes;       /* their total size */
} tr_chunks_stats;

/* The counters of rt's cache (all zero when it has none yet). Any thread. */
void tr_chunks_stats_get(tr_runtime *rt, tr_chunks_stats *out);

#endif
