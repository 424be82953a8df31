/*
 * codec.c — the binary encoding of Lua values sent between Lua VMs.
 *
 * A value is a tag byte and a payload. Varints are LEB128: 7 bits a byte, low group
 * first, high bit set when more follow; at most 10 bytes and never overlong (a last
 * byte of 0 after the first is refused). Integers are zigzag-mapped first (0, -1, 1,
 * -2, ... -> 0, 1, 2, 3, ...) so that small negative numbers stay short.
 *
 *   0x00                 nil
 *   0x01                 false
 *   0x02                 true
 *   0x03 varint          integer (zigzag; any 64-bit lua_Integer)
 *   0x04 8 bytes         float: IEEE-754 binary64 bits, little-endian (-0.0, inf, nan kept)
 *   0x05 varint n, n bytes   string
 *   0x06 varint a, varint h, a values, h (key, value) pairs
 *                        table: t[1..a] in order, then every other pair
 *   0x07 8 bytes         pid (a light userdata's pointer value), little-endian
 *   0x08 .. 0x3f         unused: "bad tag"
 *   0x40 | n, n bytes    short string, n <= 63
 *   0x80 | v             integer 0 .. 127
 *
 * The encoder always writes the shortest form (0x80|v for 0..127, 0x40|n for strings
 * up to 63 bytes); the decoder accepts the long forms too. In a table, a is the length
 * of the sequence t[1], t[2], ... up to the first nil, so it depends on the content
 * only; the h pairs come in lua_next order. Table values are never nil, keys never nil
 * or NaN. Examples: 5 -> 85; -1 -> 03 01; 300 -> 03 d8 04; "hi" -> 42 68 69;
 * {1, 2, x = 3} -> 06 02 01 81 82 41 78 83.
 *
 * Speed: nothing is allocated besides buffer growth (doubling). Encoding an integer or
 * a short string is one capacity check and a few stores. A table's counts are written
 * as one-byte placeholders and widened by a memmove in the rare case they reach 128,
 * so a table usually costs a single lua_next pass (see enc_table).
 */
#include <limits.h>
#include <math.h>
#include <string.h>

#include "codec.h"

enum {
    TAG_NIL      = 0x00,
    TAG_FALSE    = 0x01,
    TAG_TRUE     = 0x02,
    TAG_INT      = 0x03,
    TAG_FLOAT    = 0x04,
    TAG_STR      = 0x05,
    TAG_TABLE    = 0x06,
    TAG_PID      = 0x07,
    TAG_SHORTSTR = 0x40, /* | length */
    TAG_FIXINT   = 0x80, /* | value */
};

#define SHORTSTR_MAX 63
#define FIXINT_MAX   127
#define VARINT_MAX   10  /* bytes of a 64-bit varint */

#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

_Static_assert(sizeof(lua_Number) == 8, "the codec sends lua_Number as binary64");
_Static_assert(sizeof(lua_Integer) == 8, "the codec sends 64-bit integers");
_Static_assert(sizeof(void *) >= sizeof(tr_pid), "a pid must fit in a light userdata");

static const char msg_nomem[] = "out of memory";

/* ---- bytes ---------------------------------------------------------------------- */

static inline uint64_t zigzag(lua_Integer v)
{
    uint64_t u = (uint64_t)v;
    return (u << 1) ^ (0 - (u >> 63));
}

static inline lua_Integer unzigzag(uint64_t u)
{
    return (lua_Integer)((u >> 1) ^ (0 - (u & 1)));
}

static inline uint8_t *put_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

static inline size_t varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static inline void put_u64le(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint64_t get_u64le(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* ---- buffer --------------------------------------------------------------------- */

void tr_buf_free(tr_buf *b)
{
    if (b == NULL)
        return;
    tr_free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* The slow path of reserve: doubles the capacity until n more bytes fit. */
__attribute__((noinline)) int tr_buf_grow(tr_buf *b, size_t n)
{
    if (n > SIZE_MAX / 2 - b->len)
        return TR_ENOMEM;
    size_t need = b->len + n;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    char *p = tr_realloc(b->data, cap);
    if (p == NULL)
        return TR_ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

static inline int reserve(tr_buf *b, size_t n)
{
    if (likely(b->cap - b->len >= n))
        return 0;
    return tr_buf_grow(b, n);
}

/* ---- encoder -------------------------------------------------------------------- */

typedef struct enc {
    lua_State  *L;
    tr_buf     *b;
    const char *err;                          /* the message of a TR_EINVAL */
    int         depth;                        /* tables being encoded */
    const void *open[TR_CODEC_MAX_DEPTH];     /* those tables, outermost first */
} enc;

static int enc_fail(enc *e, const char *msg)
{
    e->err = msg;
    return TR_EINVAL;
}

static inline int enc_int(tr_buf *b, lua_Integer v)
{
    if (unlikely(reserve(b, 1 + VARINT_MAX)))
        return TR_ENOMEM;
    uint8_t *p = (uint8_t *)b->data + b->len;
    if ((lua_Unsigned)v <= FIXINT_MAX) {
        *p = (uint8_t)(TAG_FIXINT | v);
        b->len++;
        return 0;
    }
    *p = TAG_INT;
    b->len = (size_t)(put_varint(p + 1, zigzag(v)) - (uint8_t *)b->data);
    return 0;
}

static inline int enc_str(tr_buf *b, const char *s, size_t n)
{
    if (unlikely(reserve(b, n + 1 + VARINT_MAX)))
        return TR_ENOMEM;
    uint8_t *p = (uint8_t *)b->data + b->len;
    if (n <= SHORTSTR_MAX) {
        *p++ = (uint8_t)(TAG_SHORTSTR | n);
    } else {
        *p++ = TAG_STR;
        p = put_varint(p, n);
    }
    memcpy(p, s, n);
    b->len = (size_t)(p - (uint8_t *)b->data) + n;
    return 0;
}

static inline int enc_fixed(tr_buf *b, uint8_t tag, uint64_t bits)
{
    if (unlikely(reserve(b, 9)))
        return TR_ENOMEM;
    uint8_t *p = (uint8_t *)b->data + b->len;
    p[0] = tag;
    put_u64le(p + 1, bits);
    b->len += 9;
    return 0;
}

static inline int enc_byte(tr_buf *b, uint8_t byte)
{
    if (unlikely(reserve(b, 1)))
        return TR_ENOMEM;
    b->data[b->len++] = (char)byte;
    return 0;
}

/* Writes count n into the one-byte placeholder at data[at], widening it when n needs
 * more than a byte (128 elements or more: rare, and then the elements dwarf the
 * memmove). */
static int patch_count(tr_buf *b, size_t at, uint64_t n)
{
    if (likely(n < 0x80)) {
        b->data[at] = (char)n;
        return 0;
    }
    size_t extra = varint_len(n) - 1;
    if (reserve(b, extra))
        return TR_ENOMEM;
    uint8_t *p = (uint8_t *)b->data + at;
    memmove(p + 1 + extra, p + 1, b->len - at - 1);
    put_varint(p, n);
    b->len += extra;
    return 0;
}

static int enc_table(enc *e, int idx);

/* idx is absolute. */
static inline int enc_value(enc *e, int idx)
{
    lua_State *L = e->L;
    switch (lua_type(L, idx)) {
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx))
            return enc_int(e->b, lua_tointeger(L, idx));
        {
            lua_Number x = lua_tonumber(L, idx);
            uint64_t bits;
            memcpy(&bits, &x, sizeof bits);
            return enc_fixed(e->b, TAG_FLOAT, bits);
        }
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        return enc_str(e->b, s, n);
    }
    case LUA_TBOOLEAN:
        return enc_byte(e->b, lua_toboolean(L, idx) ? TAG_TRUE : TAG_FALSE);
    case LUA_TNIL:
        return enc_byte(e->b, TAG_NIL);
    case LUA_TTABLE:
        return enc_table(e, idx);
    case LUA_TLIGHTUSERDATA:
        return enc_fixed(e->b, TAG_PID, (uint64_t)(uintptr_t)lua_touserdata(L, idx));
    case LUA_TFUNCTION:
        return enc_fail(e, "cannot send a function");
    case LUA_TUSERDATA:
        return enc_fail(e, "cannot send a userdata");
    case LUA_TTHREAD:
        return enc_fail(e, "cannot send a thread");
    default:
        return enc_fail(e, "no value at that index");
    }
}

/* Encodes the table at absolute index idx. Leaves the stack as it found it.
 *
 * One lua_next pass does it in the usual case: lua_next visits the array part
 * first, in index order, so keys 1, 2, ..., m arrive first and their values are the
 * array part; if t[m + 1] is nil, m is the sequence's length and every later pair
 * belongs to the hash part. Otherwise the sequence goes on in the hash part (a
 * layout left by some insertion orders): its rest is read with lua_rawgeti and the
 * pairs are walked again from the start, skipping keys 1..n. Either way each value
 * is encoded once, so nesting never multiplies the work. */
static __attribute__((noinline)) int enc_table(enc *e, int idx)
{
    lua_State *L = e->L;
    tr_buf *b = e->b;
    const void *self = lua_topointer(L, idx);
    for (int i = 0; i < e->depth; i++)
        if (e->open[i] == self)
            return enc_fail(e, "cannot send a table with a cycle");
    if (e->depth == TR_CODEC_MAX_DEPTH)
        return enc_fail(e, "cannot send tables nested deeper than 64");
    if (!lua_checkstack(L, 3) || reserve(b, 3))
        return TR_ENOMEM;
    e->open[e->depth++] = self;

    int top = lua_gettop(L), key = top + 1, val = top + 2, rc, more;
    size_t at = b->len + 1;                   /* count placeholders: array, hash */
    b->data[b->len] = TAG_TABLE;
    b->len += 3;
    lua_Integer n = 0;
    uint64_t h = 0;

    lua_pushnil(L);
    while ((more = lua_next(L, idx)) &&       /* key value */
           lua_isinteger(L, key) && lua_tointeger(L, key) == n + 1) {
        if ((rc = enc_value(e, val)))
            goto fail;
        lua_pop(L, 1);
        n++;
    }
    if (lua_rawgeti(L, idx, n + 1) == LUA_TNIL) {   /* [key value] t[n+1] */
        lua_pop(L, 1);
        if ((rc = patch_count(b, at, (uint64_t)n)))
            goto fail;
        at += varint_len((uint64_t)n);
        for (; more; more = lua_next(L, idx)) {     /* key value */
            if ((rc = enc_value(e, key)) || (rc = enc_value(e, val)))
                goto fail;
            lua_pop(L, 1);
            h++;
        }
    } else {
        lua_settop(L, top);
        for (; lua_rawgeti(L, idx, n + 1) != LUA_TNIL; n++) {  /* value (at top + 1) */
            if ((rc = enc_value(e, top + 1)))
                goto fail;
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
        if ((rc = patch_count(b, at, (uint64_t)n)))
            goto fail;
        at += varint_len((uint64_t)n);
        lua_pushnil(L);
        while (lua_next(L, idx)) {            /* key value */
            if (lua_isinteger(L, key)) {
                lua_Integer k = lua_tointeger(L, key);
                if (k >= 1 && k <= n) {       /* sent in the array part */
                    lua_pop(L, 1);
                    continue;
                }
            }
            if ((rc = enc_value(e, key)) || (rc = enc_value(e, val)))
                goto fail;
            lua_pop(L, 1);
            h++;
        }
    }
    if ((rc = patch_count(b, at, h)))
        goto fail;
    e->depth--;
    return 0;

fail:
    lua_settop(L, top);
    return rc;
}

int tr_codec_encode(lua_State *L, int idx, tr_buf *out, const char **err)
{
    enc e;
    e.L = L;
    e.b = out;
    e.err = NULL;
    e.depth = 0;
    size_t mark = out->len;
    int rc = enc_value(&e, lua_absindex(L, idx));
    if (likely(rc == 0))
        return 0;
    out->len = mark;
    if (err)
        *err = rc == TR_ENOMEM ? msg_nomem : e.err;
    return rc;
}

/* ---- decoder -------------------------------------------------------------------- */

typedef struct dec {
    lua_State     *L;
    const uint8_t *p, *end;
    size_t         pending;  /* elements of open tables not started yet: >= 1 byte each */
    const char    *err;
} dec;

static int dec_fail(dec *d, const char *msg)
{
    d->err = msg;
    return TR_EINVAL;
}

static int dec_truncated(dec *d)
{
    return dec_fail(d, "truncated message");
}

static inline int get_varint(dec *d, uint64_t *out)
{
    const uint8_t *p = d->p;
    if (likely(p < d->end && *p < 0x80)) {
        *out = *p;
        d->p = p + 1;
        return 0;
    }
    uint64_t v = 0;
    for (unsigned shift = 0;; shift += 7) {
        if (p == d->end)
            return dec_truncated(d);
        unsigned byte = *p++;
        if (shift == 63 && byte > 1)          /* bits beyond 64, or an 11th byte */
            return dec_fail(d, "bad varint");
        v |= (uint64_t)(byte & 0x7f) << shift;
        if (byte < 0x80) {
            if (byte == 0 && shift > 0)       /* overlong */
                return dec_fail(d, "bad varint");
            *out = v;
            d->p = p;
            return 0;
        }
    }
}

static int dec_table(dec *d, int depth);

/* Decodes one value and pushes it; depth = tables open around it. The caller has
 * made room for one more stack slot. */
static int dec_value(dec *d, int depth)
{
    lua_State *L = d->L;
    if (unlikely(d->p == d->end))
        return dec_truncated(d);
    unsigned tag = *d->p++;
    if (tag >= TAG_FIXINT) {
        lua_pushinteger(L, tag & FIXINT_MAX);
        return 0;
    }
    if (tag >= TAG_SHORTSTR) {
        size_t n = tag & SHORTSTR_MAX;
        if (unlikely((size_t)(d->end - d->p) < n))
            return dec_truncated(d);
        lua_pushlstring(L, (const char *)d->p, n);
        d->p += n;
        return 0;
    }
    uint64_t u;
    switch (tag) {
    case TAG_NIL:
        lua_pushnil(L);
        return 0;
    case TAG_FALSE:
    case TAG_TRUE:
        lua_pushboolean(L, tag == TAG_TRUE);
        return 0;
    case TAG_INT:
        if (get_varint(d, &u))
            return TR_EINVAL;
        lua_pushinteger(L, unzigzag(u));
        return 0;
    case TAG_FLOAT:
    case TAG_PID:
        if (d->end - d->p < 8)
            return dec_truncated(d);
        u = get_u64le(d->p);
        d->p += 8;
        if (tag == TAG_PID) {
            lua_pushlightuserdata(L, (void *)(uintptr_t)u);
        } else {
            lua_Number x;
            memcpy(&x, &u, sizeof x);
            lua_pushnumber(L, x);
        }
        return 0;
    case TAG_STR:
        if (get_varint(d, &u))
            return TR_EINVAL;
        if (u > (uint64_t)(d->end - d->p))
            return dec_truncated(d);
        lua_pushlstring(L, (const char *)d->p, (size_t)u);
        d->p += u;
        return 0;
    case TAG_TABLE:
        return dec_table(d, depth);
    default:
        return dec_fail(d, "bad tag");
    }
}

static __attribute__((noinline)) int dec_table(dec *d, int depth)
{
    lua_State *L = d->L;
    uint64_t na, nh;
    int rc;
    if (depth == TR_CODEC_MAX_DEPTH)
        return dec_fail(d, "nesting too deep");
    if (get_varint(d, &na) || get_varint(d, &nh))
        return TR_EINVAL;
    /* Each element takes at least a byte, and so does every element still owed by
     * the enclosing tables: check the counts against what is left for this table,
     * before lua_createtable presizes anything. */
    size_t left = (size_t)(d->end - d->p);
    if (d->pending > left)
        return dec_truncated(d);
    left -= d->pending;
    if (na > left || nh > (left - na) / 2)
        return dec_truncated(d);
    if (!lua_checkstack(L, 3)) {
        d->err = msg_nomem;
        return TR_ENOMEM;
    }
    lua_createtable(L, na < INT_MAX ? (int)na : INT_MAX, nh < INT_MAX ? (int)nh : INT_MAX);
    d->pending += (size_t)(na + 2 * nh);

    for (lua_Integer i = 1; i <= (lua_Integer)na; i++) {
        d->pending--;
        if (d->p < d->end && *d->p == TAG_NIL)
            return dec_fail(d, "nil table value");
        if ((rc = dec_value(d, depth + 1)))
            return rc;
        lua_rawseti(L, -2, i);                /* table */
    }
    for (uint64_t i = 0; i < nh; i++) {
        d->pending--;
        unsigned tag = d->p < d->end ? *d->p : TAG_FIXINT;
        if (tag == TAG_NIL)
            return dec_fail(d, "bad table key");
        if ((rc = dec_value(d, depth + 1)))   /* table key */
            return rc;
        if (tag == TAG_FLOAT && isnan(lua_tonumber(L, -1)))
            return dec_fail(d, "bad table key");
        d->pending--;
        if (d->p < d->end && *d->p == TAG_NIL)
            return dec_fail(d, "nil table value");
        if ((rc = dec_value(d, depth + 1)))   /* table key value */
            return rc;
        lua_rawset(L, -3);                    /* table */
    }
    return 0;
}

int tr_codec_decode(lua_State *L, const char *data, size_t len, const char **err)
{
    dec d;
    d.L = L;
    d.p = (const uint8_t *)data;
    d.end = len ? d.p + len : d.p;            /* no arithmetic on a NULL data */
    d.pending = 0;
    d.err = NULL;
    int top = lua_gettop(L), rc;
    if (unlikely(!lua_checkstack(L, 1))) {
        d.err = msg_nomem;
        rc = TR_ENOMEM;
    } else if ((rc = dec_value(&d, 0)) == 0) {
        if (likely(d.p == d.end))
            return 0;
        rc = dec_fail(&d, "trailing bytes");
    }
    lua_settop(L, top);
    if (err)
        *err = d.err;
    return rc;
}

/* ---- protected decoding --------------------------------------------------------- */

typedef struct decode_call {
    const char *data;
    size_t      len;
    const char *err;
    int         rc;
} decode_call;

static int decode_cfunction(lua_State *L)
{
    decode_call *c = lua_touserdata(L, 1);
    lua_pop(L, 1);
    c->rc = tr_codec_decode(L, c->data, c->len, &c->err);
    return c->rc == 0;                        /* the value, or nothing */
}

int tr_codec_decode_protected(lua_State *L, const char *data, size_t len,
                              const char **err)
{
    decode_call c = { data, len, NULL, 0 };
    const char *msg;
    int rc;
    if (!lua_checkstack(L, 2)) {
        msg = msg_nomem;
        rc = TR_ENOMEM;
    } else {
        int top = lua_gettop(L);
        lua_pushcfunction(L, decode_cfunction); /* no allocation: a light C function */
        lua_pushlightuserdata(L, &c);
        int status = lua_pcall(L, 1, LUA_MULTRET, 0);
        if (status == LUA_OK) {
            if (c.rc == 0)
                return 0;
            msg = c.err;
            rc = c.rc;
        } else {
            lua_settop(L, top);               /* drop the error object */
            msg = status == LUA_ERRMEM ? msg_nomem : "error while decoding";
            rc = status == LUA_ERRMEM ? TR_ENOMEM : TR_EINVAL;
        }
    }
    if (err)
        *err = msg;
    return rc;
}
