/*
 * json_encode.c — Lua values to JSON text (troupe.json, see json.h).
 *
 * Straight into a tr_buf: no Lua value is created, so it never raises and may run
 * unprotected. Strings are copied 8 bytes at a time until a byte needs escaping;
 * numbers are written by hand except the floats that are not short decimals.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_int.h"

/* ---- buffer --------------------------------------------------------------------- */

/* tr_buf_reserve / tr_buf_grow (codec.h) make room; the hot path stays inline. */
static inline int reserve(tr_buf *b, size_t n)
{
    return tr_buf_reserve(b, n);
}

/* ---- encoder -------------------------------------------------------------------- */

typedef struct enc {
    lua_State  *L;
    tr_buf     *b;
    const char *err;                          /* the message of a TR_EINVAL */
    const void *array_mark, *object_mark;     /* fetched on the first metatable met */
    int         marks_fetched;
    int         depth;                        /* tables being encoded */
    const void *open[TR_JSON_MAX_DEPTH];      /* those tables, outermost first */
} enc;

static int enc_fail(enc *e, const char *msg)
{
    e->err = msg;
    return TR_EINVAL;
}

static int enc_string(tr_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    if (unlikely(reserve(b, n + 2)))
        return TR_ENOMEM;
    char *o = b->data + b->len;
    *o++ = '"';
    size_t i = 0;
    for (;;) {
        uint64_t x;
        while (n - i >= 8) {
            memcpy(&x, s + i, 8);
            if (tr__json_has_special(x))
                break;
            memcpy(o, &x, 8);
            o += 8;
            i += 8;
        }
        while (i < n && !tr__json_escape[(unsigned char)s[i]])
            *o++ = s[i++];
        if (i == n)
            break;
        unsigned char c = (unsigned char)s[i++];
        /* Room for this escape (6 at most), the rest unescaped and the quote. */
        size_t at = (size_t)(o - b->data);
        if (b->cap - at < n - i + 7) {
            b->len = at;
            if (tr_buf_grow(b, n - i + 7))
                return TR_ENOMEM;
            o = b->data + at;
        }
        *o++ = '\\';
        char e = tr__json_escape[c];
        *o++ = e;
        if (e == 'u') {
            memcpy(o, "00", 2);
            o[2] = hex[c >> 4];
            o[3] = hex[c & 15];
            o += 4;
        }
    }
    *o++ = '"';
    b->len = (size_t)(o - b->data);
    return 0;
}

static const char digit_pairs[201] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

/* Writes v in decimal at o (at most 20 bytes); returns the end. */
static inline char *put_int(char *o, lua_Integer v)
{
    uint64_t u = (uint64_t)v;
    if (v < 0) {
        *o++ = '-';
        u = 0 - u;
    }
    char tmp[20];
    char *t = tmp + sizeof tmp;
    while (u >= 100) {
        t -= 2;
        memcpy(t, digit_pairs + 2 * (u % 100), 2);
        u /= 100;
    }
    if (u >= 10) {
        t -= 2;
        memcpy(t, digit_pairs + 2 * u, 2);
    } else {
        *--t = (char)('0' + u);
    }
    size_t len = (size_t)(tmp + sizeof tmp - t);
    memcpy(o, t, len);
    return o + len;
}

static int enc_int(tr_buf *b, lua_Integer v)
{
    if (unlikely(reserve(b, 24)))
        return TR_ENOMEM;
    b->len = (size_t)(put_int(b->data + b->len, v) - b->data);
    return 0;
}

static __attribute__((noinline)) int enc_float(enc *e, lua_Number x)
{
    if (isnan(x))
        return enc_fail(e, "cannot encode NaN");
    if (isinf(x))
        return enc_fail(e, "cannot encode infinity");
    tr_buf *b = e->b;
    if (unlikely(reserve(b, 32)))
        return TR_ENOMEM;
    char *o = b->data + b->len;
    /* Integral values print as integers, like JSON.stringify (1.0 -> 1). */
    if (x >= -0x1p63 && x < 0x1p63) {
        lua_Integer i = (lua_Integer)x;
        if ((lua_Number)i == x) {
            if (i == 0 && signbit(x))
                *o++ = '-';                   /* -0 reads back as -0.0 */
            b->len = (size_t)(put_int(o, i) - b->data);
            return 0;
        }
    }
    /* Short decimals (prices, coordinates, 0.1): the fewest fraction digits k for
     * which m = x * 10^k is an integer that reads back as x, checked the way the
     * decoder reads it: m and 10^k are exact doubles (m <= 2^53, k <= 22), so
     * m / 10^k is the correctly rounded value of the text. Anything else, and tiny
     * or huge magnitudes (printed with an exponent), go through snprintf below. */
    double ax = fabs(x);
    if (ax >= 1e-5 && ax < 1e15) {
        for (int k = 1; k <= 22; k++) {
            double y = ax * tr__json_pow10[k];
            if (y >= 0x1p53)
                break;
            if (y != (double)(int64_t)y)
                continue;
            int64_t m = (int64_t)y;
            if ((double)m / tr__json_pow10[k] != ax)
                break;
            while (m % 10 == 0) {             /* x is not integral: k stays >= 1 */
                m /= 10;
                k--;
            }
            char digits[24];
            char *end = put_int(digits, m), *d = digits;
            int n = (int)(end - digits);
            if (x < 0)
                *o++ = '-';
            if (n <= k) {                     /* 0.000ddd */
                *o++ = '0';
                *o++ = '.';
                for (int z = n; z < k; z++)
                    *o++ = '0';
            } else {
                memcpy(o, d, (size_t)(n - k));
                o += n - k;
                d += n - k;
                *o++ = '.';
                n = k;
            }
            memcpy(o, d, (size_t)n);
            b->len = (size_t)(o + n - b->data);
            return 0;
        }
    }
    char tmp[40];
    int len = 0;
    for (int prec = 14; prec <= 17; prec++) {
        len = snprintf(tmp, sizeof tmp, "%.*g", prec, x);
        if (prec == 17 || strtod(tmp, NULL) == x)
            break;
    }
    /* %g writes the locale's decimal point: JSON wants '.'. */
    for (int i = 0; i < len; i++) {
        char c = tmp[i];
        if ((c >= '0' && c <= '9') || c == '-' || c == '+' || c == 'e' || c == '.') {
            *o++ = c;
        } else {
            *o++ = '.';
            while (i + 1 < len && !(tmp[i + 1] >= '0' && tmp[i + 1] <= '9'))
                i++;
        }
    }
    b->len = (size_t)(o - b->data);
    return 0;
}

static inline int enc_raw(tr_buf *b, const char *s, size_t n)
{
    if (unlikely(reserve(b, n)))
        return TR_ENOMEM;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    return 0;
}

static inline int enc_char(tr_buf *b, char c)
{
    if (unlikely(reserve(b, 1)))
        return TR_ENOMEM;
    b->data[b->len++] = c;
    return 0;
}

static int enc_table(enc *e, int idx);

/* idx is absolute. */
static inline int enc_value(enc *e, int idx)
{
    lua_State *L = e->L;
    switch (lua_type(L, idx)) {
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        return enc_string(e->b, s, n);
    }
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx))
            return enc_int(e->b, lua_tointeger(L, idx));
        return enc_float(e, lua_tonumber(L, idx));
    case LUA_TTABLE:
        return enc_table(e, idx);
    case LUA_TBOOLEAN:
        return lua_toboolean(L, idx) ? enc_raw(e->b, "true", 4) : enc_raw(e->b, "false", 5);
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == NULL)
            return enc_raw(e->b, "null", 4);
        return enc_fail(e, "cannot encode a light userdata");
    case LUA_TNIL:
        return enc_raw(e->b, "null", 4);
    case LUA_TFUNCTION:
        return enc_fail(e, "cannot encode a function");
    case LUA_TUSERDATA:
        return enc_fail(e, "cannot encode a userdata");
    case LUA_TTHREAD:
        return enc_fail(e, "cannot encode a thread");
    default:
        return enc_fail(e, "no value at that index");
    }
}

/* The refusal of a table whose string or integer keys do not fit its kind. */
static int kind_error(enc *e, int kind)
{
    if (kind == TR__JSON_ARRAY)
        return enc_fail(e, "cannot encode a json.array with non-sequence keys");
    if (kind == TR__JSON_OBJECT)
        return enc_fail(e, "cannot encode a json.object with a non-string key");
    return enc_fail(e, "cannot encode a table with mixed or sparse keys");
}

/* The refusal of the key at absolute index key, which does not fit the table. */
static int key_error(enc *e, int key, int kind)
{
    lua_State *L = e->L;
    switch (lua_type(L, key)) {
    case LUA_TSTRING:
        break;
    case LUA_TNUMBER:
        if (!lua_isinteger(L, key))
            return enc_fail(e, "cannot encode a table with a float key");
        break;
    case LUA_TBOOLEAN:
        return enc_fail(e, "cannot encode a table with a boolean key");
    case LUA_TTABLE:
        return enc_fail(e, "cannot encode a table with a table key");
    case LUA_TFUNCTION:
        return enc_fail(e, "cannot encode a table with a function key");
    case LUA_TLIGHTUSERDATA:
        return enc_fail(e, "cannot encode a table with a light userdata key");
    case LUA_TUSERDATA:
        return enc_fail(e, "cannot encode a table with a userdata key");
    default:
        return enc_fail(e, "cannot encode a table with a thread key");
    }
    return kind_error(e, kind);
}

/* The mark of the table at idx: TR__JSON_ARRAY, TR__JSON_OBJECT or TR__JSON_PLAIN. */
static int table_kind(enc *e, int idx)
{
    lua_State *L = e->L;
    if (likely(!lua_getmetatable(L, idx)))
        return TR__JSON_PLAIN;
    if (!e->marks_fetched) {                  /* mt */
        lua_rawgetp(L, LUA_REGISTRYINDEX, &tr__json_array_key);
        e->array_mark = lua_topointer(L, -1); /* NULL if no mark was ever made */
        lua_rawgetp(L, LUA_REGISTRYINDEX, &tr__json_object_key);
        e->object_mark = lua_topointer(L, -1);
        lua_pop(L, 2);
        e->marks_fetched = 1;
    }
    const void *mt = lua_topointer(L, -1);
    lua_pop(L, 1);
    if (mt == e->array_mark)
        return TR__JSON_ARRAY;
    return mt == e->object_mark ? TR__JSON_OBJECT : TR__JSON_PLAIN;
}

/* Encodes the table at absolute index idx; leaves the stack as it found it.
 *
 * The first key decides: a string makes an object, an integer an array (unless a
 * mark says otherwise). An array takes one lua_next pass in the usual case, since
 * lua_next visits the array part first, in order: values go out while the keys run
 * 1, 2, ..., n. A key out of that order (a sequence that goes on in the hash part,
 * or holes) makes it check the remaining keys instead: all integers >= 1, as many as
 * the largest of them, is exactly 1..count; then the rest goes out by lua_rawgeti. */
static __attribute__((noinline)) int enc_table(enc *e, int idx)
{
    lua_State *L = e->L;
    tr_buf *b = e->b;
    const void *self = lua_topointer(L, idx);
    for (int i = 0; i < e->depth; i++)
        if (e->open[i] == self)
            return enc_fail(e, "cannot encode a table with a cycle");
    if (e->depth == TR_JSON_MAX_DEPTH)
        return enc_fail(e, "cannot encode tables nested deeper than 128");
    if (!lua_checkstack(L, 3))
        return TR_ENOMEM;
    int kind = table_kind(e, idx);
    int top = lua_gettop(L), key = top + 1, val = top + 2, rc;
    e->open[e->depth++] = self;

    lua_pushnil(L);
    if (!lua_next(L, idx)) {                  /* empty */
        rc = kind == TR__JSON_ARRAY ? enc_raw(b, "[]", 2) : enc_raw(b, "{}", 2);
        e->depth--;
        return rc;
    }
    int keytype = lua_type(L, key);           /* key value */
    if (kind == TR__JSON_OBJECT || (kind == TR__JSON_PLAIN && keytype == LUA_TSTRING)) {
        if ((rc = enc_char(b, '{')))
            goto fail;
        for (int first = 1;; first = 0) {
            if (lua_type(L, key) != LUA_TSTRING) {
                rc = key_error(e, key, kind);
                goto fail;
            }
            size_t n;
            const char *k = lua_tolstring(L, key, &n);
            if ((!first && (rc = enc_char(b, ','))) || (rc = enc_string(b, k, n)) ||
                (rc = enc_char(b, ':')) || (rc = enc_value(e, val)))
                goto fail;
            lua_pop(L, 1);                    /* key */
            if (!lua_next(L, idx))
                break;
        }
        if ((rc = enc_char(b, '}')))
            goto fail;
        e->depth--;
        return 0;
    }
    if (kind == TR__JSON_PLAIN && !lua_isinteger(L, key)) {
        rc = key_error(e, key, kind);
        goto fail;
    }

    if ((rc = enc_char(b, '[')))
        goto fail;
    lua_Integer n = 0;
    int more = 1;
    while (lua_isinteger(L, key) && lua_tointeger(L, key) == n + 1) {
        if ((n > 0 && (rc = enc_char(b, ','))) || (rc = enc_value(e, val)))
            goto fail;
        lua_pop(L, 1);                        /* key */
        n++;
        if (!(more = lua_next(L, idx)))
            break;
    }
    if (more) {                               /* key value: out of order */
        lua_Integer count = n, max = n;
        do {
            if (!lua_isinteger(L, key) || lua_tointeger(L, key) < 1) {
                rc = key_error(e, key, kind);
                goto fail;
            }
            lua_Integer k = lua_tointeger(L, key);
            if (k > max)
                max = k;
            count++;
            lua_pop(L, 1);                    /* key */
        } while (lua_next(L, idx));
        if (max != count) {                   /* holes */
            rc = kind_error(e, kind);
            goto fail;
        }
        for (lua_Integer i = n + 1; i <= count; i++) {
            lua_rawgeti(L, idx, i);           /* value */
            if ((i > 1 && (rc = enc_char(b, ','))) || (rc = enc_value(e, top + 1)))
                goto fail;
            lua_pop(L, 1);
        }
    }
    if ((rc = enc_char(b, ']')))
        goto fail;
    e->depth--;
    return 0;

fail:
    lua_settop(L, top);
    return rc;
}

int tr_json_encode(lua_State *L, int idx, tr_buf *out, const char **err)
{
    enc e;
    e.L = L;
    e.b = out;
    e.err = NULL;
    e.marks_fetched = 0;
    e.depth = 0;
    size_t mark = out->len;
    int rc = enc_value(&e, lua_absindex(L, idx));
    if (likely(rc == 0))
        return 0;
    out->len = mark;
    if (err)
        *err = rc == TR_ENOMEM ? TR__JSON_NOMEM : e.err;
    return rc;
}
