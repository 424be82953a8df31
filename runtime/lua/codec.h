/* codec.h — Lua values <-> bytes, for messages between Lua VMs (runtime/lua).
 *
 * Each Lua actor owns its own lua_State, so a value crosses from one VM to another as
 * bytes: the sender encodes it into a tr_buf, the receiver decodes it into its state.
 * Sendable: nil, booleans, integers, floats (bits kept: -0.0, inf, nan), strings
 * (binary-safe), tables of sendable keys and values, and pids. The wire format is
 * described at the top of codec.c; it is for exchange inside one build of troupe, not
 * for storage (there is no version byte). */
#ifndef TR_LUA_CODEC_H
#define TR_LUA_CODEC_H

#include <stddef.h>
#include <stdint.h>
#include <lua.h>

#include "troupe.h"

/* Tables may nest this deep (a table holding no table has depth 1). */
#define TR_CODEC_MAX_DEPTH 64

/* A growable byte buffer; Lua-free so C code can hold, copy or send an encoding.
 * Zero-initialise it (tr_buf b = {0}); data is tr_realloc'd and grows geometrically,
 * so a buffer reused across messages (len = 0) stops allocating once warm. */
typedef struct tr_buf {
    char  *data;
    size_t len, cap;
} tr_buf;

/* Frees the buffer's memory and zeroes it (it can be used again). NULL is ignored. */
void tr_buf_free(tr_buf *b);
/* Makes room for n more bytes: 0, or TR_ENOMEM (the buffer is unchanged). */
int  tr_buf_grow(tr_buf *b, size_t n);
static inline int tr_buf_reserve(tr_buf *b, size_t n)
{
    return b->cap - b->len >= n ? 0 : tr_buf_grow(b, n);
}
/* Appends n bytes: 0 or TR_ENOMEM. */
static inline int tr_buf_append(tr_buf *b, const void *p, size_t n)
{
    if (tr_buf_reserve(b, n))
        return TR_ENOMEM;
    if (n)
        __builtin_memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

/*
 * Appends the encoding of the value at idx to out (which it borrows). Returns 0, or:
 *   TR_EINVAL with *err set to a static message: "cannot send a function",
 *     "cannot send a userdata" (a full userdata), "cannot send a thread",
 *     "cannot send a table with a cycle", "cannot send tables nested deeper than 64",
 *     "no value at that index";
 *   TR_ENOMEM ("out of memory") when the buffer cannot grow (or the Lua stack).
 * On failure out->len is what it was on entry (the bytes appended so far are
 * dropped; capacity may have grown) and the Lua stack is as it was.
 * Any light userdata is a pid: its pointer value is the tr_pid (see tr_codec_pushpid).
 * Metatables are ignored: tables are read raw (no __index, __pairs) and arrive
 * without a metatable. A table reached twice without a cycle (a DAG) is encoded
 * twice, so it arrives as two distinct equal tables. The array part is the sequence
 * t[1..n] up to the first nil; every other key goes to the hash part, in lua_next
 * order, so two equal tables encode to the same length, not always the same bytes.
 * Never raises a Lua error and allocates nothing from Lua: it may run unprotected.
 * err may be NULL.
 */
int tr_codec_encode(lua_State *L, int idx, tr_buf *out, const char **err);

/*
 * Decodes exactly one value from data[0..len) (borrowed) and pushes it onto L's stack.
 * Returns 0 (one value pushed), or TR_EINVAL with *err set to a static message and
 * nothing pushed: "truncated message", "bad tag", "bad varint" (overlong or over 64
 * bits), "nesting too deep", "bad table key" (nil or NaN), "nil table value",
 * "trailing bytes"; or TR_ENOMEM ("out of memory") when the Lua stack cannot grow.
 * Untrusted input is fine: it never reads outside data[0..len), recursion is bounded
 * by TR_CODEC_MAX_DEPTH, and every table slot it presizes is backed by at least one
 * byte of the message, so a message of n bytes never makes it allocate more than
 * O(n) (a huge declared length fails as truncated before anything is allocated).
 * A key repeated in one table keeps its last value.
 * It calls lua_createtable and lua_pushlstring, which raise a memory error (a
 * longjmp) when the Lua allocator fails: call it only where that is caught — inside
 * a lua_CFunction or a coroutine run under lua_pcall/lua_resume — and use
 * tr_codec_decode_protected from plain C. It holds no C resource, so being unwound
 * leaks nothing. err may be NULL.
 */
int tr_codec_decode(lua_State *L, const char *data, size_t len, const char **err);

/*
 * tr_codec_decode under lua_pcall, for callers outside any protected call: a Lua
 * memory error becomes TR_ENOMEM ("out of memory") with nothing pushed, and L stays
 * usable. Another Lua error (none is expected) gives TR_EINVAL ("error while
 * decoding"). Costs one lua_pcall over tr_codec_decode.
 */
int tr_codec_decode_protected(lua_State *L, const char *data, size_t len,
                              const char **err);

/* Pushes a pid the way the codec represents it: a light userdata whose pointer value
 * is the pid. tr_codec_topid reads one back (TR_PID_NONE when idx is not a light
 * userdata). */
static inline void tr_codec_pushpid(lua_State *L, tr_pid pid)
{
    lua_pushlightuserdata(L, (void *)(uintptr_t)pid);
}

static inline tr_pid tr_codec_topid(lua_State *L, int idx)
{
    if (lua_type(L, idx) != LUA_TLIGHTUSERDATA)
        return TR_PID_NONE;
    return (tr_pid)(uintptr_t)lua_touserdata(L, idx);
}

#endif
