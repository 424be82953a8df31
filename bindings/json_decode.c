/*
 * json_decode.c — JSON text to Lua values (troupe.json, see json.h).
 *
 * One pass, values pushed as they are parsed. The elements of an array or object
 * wait on the Lua stack until it closes, and the table is then created at its final
 * size (no rehash while it fills). Strings without escapes are pushed straight from
 * the input; the others are unescaped into a scratch buffer (on the C stack when
 * small, else a userdata, so that a Lua memory error unwinding the decoder leaks
 * nothing). Numbers: integers and short decimals are converted by hand, exactly;
 * the rest by strtod.
 */
#include <locale.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_int.h"

/* ---- decoder -------------------------------------------------------------------- */

#define SMALL_SCRATCH 256  /* unescaped strings and long numbers up to this: no allocation */
#define FLUSH_AT      256  /* elements one array or object keeps on the Lua stack */

typedef struct dec {
    lua_State  *L;
    const char *s, *p, *end;
    const char *what, *at;                    /* a failure: what, and where */
    int         depth;                        /* arrays and objects open */
    int         array_mark, object_mark;      /* stack indexes of the marks */
    int         scratch_slot;                 /* stack index keeping a big scratch alive */
    char       *scratch;
    size_t      scratch_cap;
    char        small[SMALL_SCRATCH];
} dec;

static int dec_fail(dec *d, const char *at, const char *what)
{
    d->at = at;
    d->what = what;
    return TR_EINVAL;
}

static int dec_nomem(dec *d)
{
    d->at = NULL;
    d->what = TR__JSON_NOMEM;
    return TR_ENOMEM;
}

static inline int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static inline const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    return p;
}

/* n bytes of scratch (contents not kept): the small buffer, else a userdata held in
 * the scratch slot, so that a Lua error unwinding the decoder leaks nothing. The
 * caller has made room for one stack slot. */
static char *scratch(dec *d, size_t n)
{
    if (n <= d->scratch_cap)
        return d->scratch;
    size_t cap = d->scratch_cap * 2 > n ? d->scratch_cap * 2 : n;
    d->scratch = lua_newuserdatauv(d->L, cap, 0);
    lua_replace(d->L, d->scratch_slot);
    d->scratch_cap = cap;
    return d->scratch;
}

/* Reads 4 hex digits at p (limit: the end of the string). */
static int hex4(const char *p, const char *limit, uint32_t *out)
{
    if (limit - p < 4)
        return -1;
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        uint32_t h;
        if (c >= '0' && c <= '9')
            h = (uint32_t)(c - '0');
        else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
            h = (uint32_t)((c | 0x20) - 'a' + 10);
        else
            return -1;
        v = v << 4 | h;
    }
    *out = v;
    return 0;
}

static char *put_utf8(char *o, uint32_t cp)
{
    if (cp < 0x80) {
        *o++ = (char)cp;
    } else if (cp < 0x800) {
        *o++ = (char)(0xc0 | cp >> 6);
        *o++ = (char)(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
        *o++ = (char)(0xe0 | cp >> 12);
        *o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
        *o++ = (char)(0x80 | (cp & 0x3f));
    } else {
        *o++ = (char)(0xf0 | cp >> 18);
        *o++ = (char)(0x80 | ((cp >> 12) & 0x3f));
        *o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
        *o++ = (char)(0x80 | (cp & 0x3f));
    }
    return o;
}

/* The rest of a string with escapes: open is its quote, q its first backslash.
 * Every escape is shorter than what it stands for, so the text between the quotes
 * bounds the result. */
static __attribute__((noinline)) int dec_escaped(dec *d, const char *open, const char *q)
{
    const char *end = d->end, *close = q;
    for (;;) {                                /* find the closing quote */
        if (close == end)
            return dec_fail(d, open, "unterminated string");
        unsigned char c = (unsigned char)*close;
        if (c == '"')
            break;
        if (c == '\\') {
            if (end - close < 2)
                return dec_fail(d, open, "unterminated string");
            close += 2;
        } else if (c < 0x20) {
            return dec_fail(d, close, "control character in string");
        } else {
            close++;
        }
    }
    const char *r = open + 1;
    char *o0 = scratch(d, (size_t)(close - r)), *o = o0;
    while (r < close) {
        const char *bs = memchr(r, '\\', (size_t)(close - r));
        if (bs == NULL)
            bs = close;
        memcpy(o, r, (size_t)(bs - r));
        o += bs - r;
        r = bs;
        if (r == close)
            break;
        uint32_t cp, lo;
        switch (r[1]) {
        case '"':  *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '/':  *o++ = '/'; break;
        case 'b':  *o++ = '\b'; break;
        case 'f':  *o++ = '\f'; break;
        case 'n':  *o++ = '\n'; break;
        case 'r':  *o++ = '\r'; break;
        case 't':  *o++ = '\t'; break;
        case 'u':
            if (hex4(r + 2, close, &cp))
                return dec_fail(d, r, "invalid \\u escape");
            if (cp >= 0xdc00 && cp <= 0xdfff)
                return dec_fail(d, r, "lone surrogate in \\u escape");
            if (cp >= 0xd800 && cp <= 0xdbff) {
                if (close - r < 12 || r[6] != '\\' || r[7] != 'u' || hex4(r + 8, close, &lo) ||
                    lo < 0xdc00 || lo > 0xdfff)
                    return dec_fail(d, r, "lone surrogate in \\u escape");
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                r += 6;
            }
            o = put_utf8(o, cp);
            r += 4;
            break;
        default:
            return dec_fail(d, r, "invalid escape");
        }
        r += 2;
    }
    lua_pushlstring(d->L, o0, (size_t)(o - o0));
    d->p = close + 1;
    return 0;
}

/* d->p is at the opening quote. Pushes the string. */
static inline int dec_string(dec *d)
{
    const char *open = d->p, *q = open + 1, *end = d->end;
    while (end - q >= 8) {
        uint64_t x;
        memcpy(&x, q, 8);
        if (tr__json_has_special(x))
            break;
        q += 8;
    }
    while (q < end && !tr__json_escape[(unsigned char)*q])
        q++;
    if (unlikely(q == end))
        return dec_fail(d, open, "unterminated string");
    if (likely(*q == '"')) {
        lua_pushlstring(d->L, open + 1, (size_t)(q - open - 1));
        d->p = q + 1;
        return 0;
    }
    if (*q != '\\')
        return dec_fail(d, q, "control character in string");
    return dec_escaped(d, open, q);
}

/* strtod over the number's text [start, end), copied so that it ends there, and
 * read again with the locale's decimal point when strtod wants that one. */
static __attribute__((noinline)) int slow_double(dec *d, const char *start, const char *end,
                                                double *out)
{
    size_t len = (size_t)(end - start);
    char *buf = scratch(d, len + 1), *stop;
    memcpy(buf, start, len);
    buf[len] = '\0';
    double x = strtod(buf, &stop);
    if (stop != buf + len) {
        char *dot = memchr(buf, '.', len);
        const char *point = localeconv()->decimal_point;
        if (dot && point[0] && !point[1]) {
            *dot = point[0];
            x = strtod(buf, &stop);
        }
        if (stop != buf + len)
            return dec_fail(d, start, "invalid number");
    }
    if (isinf(x))
        return dec_fail(d, start, "number out of range");
    *out = x;
    return 0;
}

/* d->p is at '-' or a digit. Pushes an integer when the literal has no fraction nor
 * exponent and fits in 64 bits, else a float. */
static int dec_number(dec *d)
{
    const char *start = d->p, *p = start, *end = d->end;
    int neg = *p == '-';
    p += neg;
    if (p == end || !is_digit(*p))
        return dec_fail(d, p, "invalid number");
    /* Up to 19 significant digits in m; more (dropped) leave it to strtod. */
    uint64_t m = 0;
    int digits = 0, dropped = 0, frac = 0, exp10 = 0, is_float = 0;
    if (*p == '0') {
        p++;
        if (p < end && is_digit(*p))
            return dec_fail(d, start, "leading zero in number");
    } else {
        for (; p < end && is_digit(*p); p++) {
            if (digits < 19) {
                m = m * 10 + (uint64_t)(*p - '0');
                digits++;
            } else {
                dropped = 1;
            }
        }
    }
    if (p < end && *p == '.') {
        p++;
        if (p == end || !is_digit(*p))
            return dec_fail(d, p, "invalid number");
        is_float = 1;
        for (; p < end && is_digit(*p); p++) {
            if (m == 0 && *p == '0' && frac < 100000) {   /* leading: not significant */
                frac++;
            } else if (digits < 19 && frac < 100000) {
                m = m * 10 + (uint64_t)(*p - '0');
                digits++;
                frac++;
            } else {
                dropped = 1;
            }
        }
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        int eneg = 0;
        if (p < end && (*p == '+' || *p == '-'))
            eneg = *p++ == '-';
        if (p == end || !is_digit(*p))
            return dec_fail(d, p, "invalid number");
        is_float = 1;
        for (; p < end && is_digit(*p); p++)
            if (exp10 < 100000)               /* far beyond any double: strtod decides */
                exp10 = exp10 * 10 + (*p - '0');
        if (eneg)
            exp10 = -exp10;
    }
    d->p = p;
    lua_State *L = d->L;
    if (!is_float && !dropped) {
        if (!neg && m <= (uint64_t)INT64_MAX) {
            lua_pushinteger(L, (lua_Integer)m);
            return 0;
        }
        if (neg && m != 0 && m <= (uint64_t)INT64_MAX + 1) {
            lua_pushinteger(L, -(lua_Integer)(m - 1) - 1);
            return 0;
        }
    }
    double x;
    int e = exp10 - frac;
    if (!dropped && m <= (1ull << 53) && e >= -22 && e <= 22) {
        /* Both exact, so one rounding: the correctly rounded result (Clinger). */
        x = e < 0 ? (double)m / tr__json_pow10[-e] : (double)m * tr__json_pow10[e];
        if (neg)
            x = -x;
    } else if (slow_double(d, start, p, &x)) {
        return TR_EINVAL;
    }
    lua_pushnumber(L, x);
    return 0;
}

static int dec_value(dec *d);

/* d->p is at '['. The elements wait on the stack above a placeholder for the table,
 * which is made at their count (or when FLUSH_AT of them are waiting). */
static int dec_array(dec *d)
{
    lua_State *L = d->L;
    const char *p = d->p, *end = d->end;
    if (d->depth == TR_JSON_MAX_DEPTH)
        return dec_fail(d, p, "nesting deeper than 128");
    d->depth++;
    int slot = lua_gettop(L) + 1, made = 0, rc;
    lua_pushnil(L);                           /* placeholder */
    lua_Integer n = 0;
    p = skip_ws(p + 1, end);
    if (p < end && *p == ']') {
        d->p = p + 1;
    } else {
        d->p = p;
        for (;;) {
            if (unlikely(!lua_checkstack(L, 3)))
                return dec_nomem(d);
            if ((rc = dec_value(d)))          /* placeholder e1 .. en */
                return rc;
            n++;
            if (made) {
                lua_rawseti(L, slot, n);
            } else if (n == FLUSH_AT) {
                lua_createtable(L, FLUSH_AT, 0);
                lua_replace(L, slot);         /* t e1 .. en */
                for (lua_Integer i = n; i >= 1; i--)
                    lua_rawseti(L, slot, i);
                made = 1;
            }
            p = skip_ws(d->p, end);
            if (p == end)
                return dec_fail(d, end, "unexpected end of input");
            if (*p == ']') {
                d->p = p + 1;
                break;
            }
            if (*p != ',')
                return dec_fail(d, p, "expected ',' or ']'");
            p = skip_ws(p + 1, end);
            if (p < end && *p == ']')
                return dec_fail(d, p, "trailing comma");
            d->p = p;
        }
    }
    if (!made) {
        lua_createtable(L, (int)n, 0);
        lua_replace(L, slot);                 /* t e1 .. en */
        for (lua_Integer i = n; i >= 1; i--)
            lua_rawseti(L, slot, i);
    }
    lua_pushvalue(L, d->array_mark);
    lua_setmetatable(L, slot);                /* t */
    d->depth--;
    return 0;
}

/* Sets the n pairs waiting above slot into the table there, in order (the last of
 * a repeated key wins), and pops them. */
static void set_pairs(lua_State *L, int slot, int n)
{
    for (int i = 0; i < n; i++) {
        lua_pushvalue(L, slot + 1 + 2 * i);
        lua_pushvalue(L, slot + 2 + 2 * i);
        lua_rawset(L, slot);
    }
    lua_settop(L, slot);
}

/* d->p is at '{'. Like dec_array, with key-value pairs. */
static int dec_object(dec *d)
{
    lua_State *L = d->L;
    const char *p = d->p, *end = d->end;
    if (d->depth == TR_JSON_MAX_DEPTH)
        return dec_fail(d, p, "nesting deeper than 128");
    d->depth++;
    int slot = lua_gettop(L) + 1, made = 0, n = 0, rc;
    lua_pushnil(L);                           /* placeholder */
    p = skip_ws(p + 1, end);
    if (p < end && *p == '}') {
        d->p = p + 1;
    } else {
        for (;;) {
            if (p == end)
                return dec_fail(d, end, "unexpected end of input");
            if (*p != '"')
                return dec_fail(d, p, "expected a string key");
            if (unlikely(!lua_checkstack(L, 4)))
                return dec_nomem(d);
            d->p = p;
            if ((rc = dec_string(d)))         /* placeholder k1 v1 .. kn */
                return rc;
            p = skip_ws(d->p, end);
            if (p == end)
                return dec_fail(d, end, "unexpected end of input");
            if (*p != ':')
                return dec_fail(d, p, "expected ':'");
            d->p = p + 1;
            if ((rc = dec_value(d)))          /* placeholder k1 v1 .. kn vn */
                return rc;
            n++;
            if (made) {
                lua_rawset(L, slot);
            } else if (n == FLUSH_AT) {
                lua_createtable(L, 0, FLUSH_AT);
                lua_replace(L, slot);
                set_pairs(L, slot, n);        /* t */
                made = 1;
            }
            p = skip_ws(d->p, end);
            if (p == end)
                return dec_fail(d, end, "unexpected end of input");
            if (*p == '}') {
                d->p = p + 1;
                break;
            }
            if (*p != ',')
                return dec_fail(d, p, "expected ',' or '}'");
            p = skip_ws(p + 1, end);
            if (p < end && *p == '}')
                return dec_fail(d, p, "trailing comma");
        }
    }
    if (!made) {
        lua_createtable(L, 0, n);
        lua_replace(L, slot);
        set_pairs(L, slot, n);                /* t */
    }
    lua_pushvalue(L, d->object_mark);
    lua_setmetatable(L, slot);
    d->depth--;
    return 0;
}

/* Pushes the value at d->p (after whitespace). The caller has made room for 3 stack
 * slots. */
static int dec_value(dec *d)
{
    const char *p = skip_ws(d->p, d->end), *end = d->end;
    if (unlikely(p == end))
        return dec_fail(d, end, "unexpected end of input");
    d->p = p;
    switch (*p) {
    case '"':
        return dec_string(d);
    case '{':
        return dec_object(d);
    case '[':
        return dec_array(d);
    case '-': case '0': case '1': case '2': case '3': case '4':
    case '5': case '6': case '7': case '8': case '9':
        return dec_number(d);
    case 't':
        if (end - p < 4 || memcmp(p, "true", 4) != 0)
            break;
        lua_pushboolean(d->L, 1);
        d->p = p + 4;
        return 0;
    case 'f':
        if (end - p < 5 || memcmp(p, "false", 5) != 0)
            break;
        lua_pushboolean(d->L, 0);
        d->p = p + 5;
        return 0;
    case 'n':
        if (end - p < 4 || memcmp(p, "null", 4) != 0)
            break;
        lua_pushlightuserdata(d->L, NULL);
        d->p = p + 4;
        return 0;
    case '/':
        return dec_fail(d, p, "comments are not allowed");
    default:
        return dec_fail(d, p, "expected a value");
    }
    return dec_fail(d, p, "invalid literal");
}

int tr_json_decode(lua_State *L, const char *s, size_t n, const char **err)
{
    static _Thread_local char message[128];
    dec d;
    if (n == 0)
        s = "";                               /* no arithmetic on a NULL s */
    d.L = L;
    d.s = d.p = s;
    d.end = s + n;
    d.what = d.at = NULL;
    d.depth = 0;
    d.scratch = d.small;
    d.scratch_cap = sizeof d.small;
    int top = lua_gettop(L), rc;
    if (unlikely(!lua_checkstack(L, 6))) {
        rc = dec_nomem(&d);
    } else {
        tr__json_push_mark(L, TR__JSON_ARRAY);
        tr__json_push_mark(L, TR__JSON_OBJECT);
        lua_pushnil(L);                       /* array object scratch */
        d.array_mark = top + 1;
        d.object_mark = top + 2;
        d.scratch_slot = top + 3;
        if ((rc = dec_value(&d)) == 0) {      /* array object scratch value */
            const char *p = skip_ws(d.p, d.end);
            if (likely(p == d.end)) {
                lua_replace(L, top + 1);
                lua_settop(L, top + 1);       /* value */
                return 0;
            }
            rc = dec_fail(&d, p, "unexpected data after the value");
        }
    }
    lua_settop(L, top);
    if (err) {
        if (rc == TR_ENOMEM) {
            *err = TR__JSON_NOMEM;
        } else {
            snprintf(message, sizeof message, "invalid JSON at byte %zu: %s",
                     (size_t)(d.at - s) + 1, d.what);
            *err = message;
        }
    }
    return rc;
}

/* ---- protected decoding --------------------------------------------------------- */

typedef struct decode_call {
    const char *s;
    size_t      n;
    const char *err;
    int         rc;
} decode_call;

static int decode_cfunction(lua_State *L)
{
    decode_call *c = lua_touserdata(L, 1);
    lua_pop(L, 1);
    c->rc = tr_json_decode(L, c->s, c->n, &c->err);
    return c->rc == 0;                        /* the value, or nothing */
}

int tr_json_decode_protected(lua_State *L, const char *s, size_t n, const char **err)
{
    decode_call c = { s, n, NULL, 0 };
    const char *msg;
    int rc;
    if (!lua_checkstack(L, 2)) {
        msg = TR__JSON_NOMEM;
        rc = TR_ENOMEM;
    } else {
        int top = lua_gettop(L);
        lua_pushcfunction(L, decode_cfunction); /* a light C function: no allocation */
        lua_pushlightuserdata(L, &c);
        int status = lua_pcall(L, 1, LUA_MULTRET, 0);
        if (status == LUA_OK) {
            if (c.rc == 0)
                return 0;
            msg = c.err;
            rc = c.rc;
        } else {
            lua_settop(L, top);               /* drop the error object */
            msg = status == LUA_ERRMEM ? TR__JSON_NOMEM : "error while decoding";
            rc = status == LUA_ERRMEM ? TR_ENOMEM : TR_EINVAL;
        }
    }
    if (err)
        *err = msg;
    return rc;
}
