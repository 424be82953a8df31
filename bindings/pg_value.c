/*
 * pg_value.c — Postgres text-format values to Lua, Lua values to parameters
 * (see pg_lua.h for the mapping).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <lauxlib.h>

#include "json.h"
#include "pg_lua.h"

/* ---- result values ---- */

enum { K_STR, K_INT, K_FLOAT, K_BOOL, K_BYTEA, K_JSON, K_TS, K_TSTZ, K_ARRAY = 0x80 };

static uint8_t oid_kind(Oid t)
{
    switch (t) {
    case 16:   return K_BOOL;
    case 17:   return K_BYTEA;
    case 20: case 21: case 23: case 26: return K_INT;
    case 700: case 701: return K_FLOAT;
    case 114: case 3802: return K_JSON;
    case 1114: return K_TS;
    case 1184: return K_TSTZ;
    case 1000: return K_ARRAY | K_BOOL;
    case 1001: return K_ARRAY | K_BYTEA;
    case 1005: case 1007: case 1016: case 1028: return K_ARRAY | K_INT;
    case 1021: case 1022: return K_ARRAY | K_FLOAT;
    case 199: case 3807: return K_ARRAY | K_JSON;
    case 1115: return K_ARRAY | K_TS;
    case 1185: return K_ARRAY | K_TSTZ;
    case 1002: case 1003: case 1009: case 1014: case 1015: case 1182: case 1183:
    case 1187: case 1231: case 1270: case 2951: case 791:
        return K_ARRAY | K_STR;
    default:   return K_STR;
    }
}

static void push_int(lua_State *L, const char *s, size_t n)
{
    size_t i = 0;
    int neg = n > 0 && s[0] == '-';
    uint64_t v = 0;
    for (i = (size_t)neg; i < n && s[i] >= '0' && s[i] <= '9'; i++)
        v = v * 10 + (uint64_t)(s[i] - '0');
    if (i != n || n == (size_t)neg || n > 20) {
        lua_pushlstring(L, s, n);     /* not a plain integer: keep the text */
        return;
    }
    lua_pushinteger(L, (lua_Integer)(neg ? 0 - v : v));
}

static void push_float(lua_State *L, const char *s, size_t n)
{
    char b[64];
    if (n >= sizeof b) {
        lua_pushlstring(L, s, n);
        return;
    }
    memcpy(b, s, n);
    b[n] = '\0';
    lua_pushnumber(L, (lua_Number)strtod(b, NULL));   /* also NaN, Infinity */
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static void push_bytea(lua_State *L, const char *s, size_t n)
{
    if (n < 2 || s[0] != '\\' || s[1] != 'x' || (n & 1)) {
        lua_pushlstring(L, s, n);         /* not the hex format: as it came */
        return;
    }
    size_t m = (n - 2) / 2;
    luaL_Buffer B;
    char *out = luaL_buffinitsize(L, &B, m);
    for (size_t i = 0; i < m; i++) {
        int hi = hexval(s[2 + 2 * i]), lo = hexval(s[3 + 2 * i]);
        out[i] = (char)((hi < 0 ? 0 : hi) << 4 | (lo < 0 ? 0 : lo));
    }
    luaL_pushresultsize(&B, m);
}

/* "2024-01-02 03:04:05.5+05:30" -> "2024-01-02T03:04:05.5+05:30"; a zone offset of
 * hours only ("+00") gets its minutes ("+00:00"). infinity stays as it is. */
static void push_timestamp(lua_State *L, const char *s, size_t n, int tz)
{
    char b[80];
    if (n + 4 >= sizeof b || n < 10) {
        lua_pushlstring(L, s, n);
        return;
    }
    memcpy(b, s, n);
    char *sp = memchr(b, ' ', n);
    if (sp == NULL || sp + 1 >= b + n || sp[1] < '0' || sp[1] > '9') {
        lua_pushlstring(L, s, n);
        return;
    }
    *sp = 'T';
    size_t len = n;
    if (tz) {
        char *t = sp + 1, *end = b + n, *sign = NULL;
        for (char *q = t; q < end && *q != ' '; q++)
            if (*q == '+' || *q == '-')
                sign = q;
        if (sign) {
            char *zend = memchr(sign, ' ', (size_t)(end - sign));
            zend = zend ? zend : end;
            if (zend - sign == 3) {           /* +HH: insert :00 */
                memmove(zend + 3, zend, (size_t)(end - zend));
                memcpy(zend, ":00", 3);
                len += 3;
            }
        }
    }
    lua_pushlstring(L, b, len);
}

static void push_scalar(lua_State *L, int kind, const char *s, size_t n)
{
    switch (kind) {
    case K_INT:   push_int(L, s, n); break;
    case K_FLOAT: push_float(L, s, n); break;
    case K_BOOL:  lua_pushboolean(L, n > 0 && s[0] == 't'); break;
    case K_BYTEA: push_bytea(L, s, n); break;
    case K_JSON:
        if (tr_json_decode(L, s, n, NULL) != 0)
            lua_pushlstring(L, s, n);         /* the server's JSON: cannot happen */
        break;
    case K_TS:    push_timestamp(L, s, n, 0); break;
    case K_TSTZ:  push_timestamp(L, s, n, 1); break;
    default:      lua_pushlstring(L, s, n); break;
    }
}

/* Parses one level "{a,b,{..}}" of an array's text at *pi; pushes the table. tmp has
 * room for the whole text (quoted elements are unescaped there). 0 when malformed
 * (what was pushed stays: the caller resets the stack). */
static int parse_level(lua_State *L, int ek, const char *s, size_t n, size_t *pi,
                       char *tmp, int depth)
{
    size_t i = *pi;
    if (depth > 8 || i >= n || s[i] != '{')
        return 0;
    luaL_checkstack(L, 4, NULL);
    i++;
    if (i < n && s[i] == '}') {       /* empty: marked, so JSON says [] */
        tr_json_decode(L, "[]", 2, NULL);
        *pi = i + 1;
        return 1;
    }
    lua_newtable(L);
    int t = lua_gettop(L);
    lua_Integer k = 0;
    for (;;) {
        if (i >= n)
            return 0;
        if (s[i] == '{') {
            if (!parse_level(L, ek, s, n, &i, tmp, depth + 1))
                return 0;
        } else if (s[i] == '"') {
            size_t m = 0;
            for (i++; i < n && s[i] != '"'; i++) {
                if (s[i] == '\\' && i + 1 < n)
                    i++;
                tmp[m++] = s[i];
            }
            if (i++ >= n)
                return 0;
            push_scalar(L, ek, tmp, m);
        } else {
            size_t st = i;
            while (i < n && s[i] != ',' && s[i] != '}')
                i++;
            if (i - st == 4 && strncasecmp(s + st, "NULL", 4) == 0)
                tr_json_pushnull(L);
            else
                push_scalar(L, ek, s + st, i - st);
        }
        lua_rawseti(L, t, ++k);
        if (i >= n)
            return 0;
        if (s[i] == '}') {
            *pi = i + 1;
            return 1;
        }
        if (s[i++] != ',')
            return 0;
    }
}

static void push_array(lua_State *L, int ek, const char *s, size_t n)
{
    size_t i = 0;
    if (n && s[0] == '[') {               /* "[0:2]={...}": bounds other than 1.. */
        const char *eq = memchr(s, '=', n);
        i = eq ? (size_t)(eq - s) + 1 : n;
    }
    char *tmp = lua_newuserdatauv(L, n + 1, 0);
    int top = lua_gettop(L);
    if (!parse_level(L, ek, s, n, &i, tmp, 0)) {
        lua_settop(L, top - 1);
        lua_pushlstring(L, s, n);
        return;
    }
    lua_remove(L, top);
}

static void push_row(lua_State *L, const PGresult *r, int row, int ncols, int names,
                     const uint8_t *kinds)
{
    lua_createtable(L, 0, ncols);
    for (int j = 0; j < ncols; j++) {
        lua_pushvalue(L, names + j);
        if (PQgetisnull(r, row, j)) {
            tr_json_pushnull(L);
        } else {
            const char *s = PQgetvalue(r, row, j);
            size_t n = (size_t)PQgetlength(r, row, j);
            if (kinds[j] & K_ARRAY)
                push_array(L, kinds[j] & ~K_ARRAY, s, n);
            else
                push_scalar(L, kinds[j], s, n);
        }
        lua_rawset(L, -3);
    }
}

int tr_pg_push_rows(lua_State *L, const PGresult *r, int one)
{
    int base = lua_gettop(L);
    int nrows = PQntuples(r), ncols = PQnfields(r);
    luaL_checkstack(L, ncols + 12, "too many columns");
    uint8_t kstack[64], *kinds = kstack;
    if (ncols > (int)sizeof kstack)
        kinds = lua_newuserdatauv(L, (size_t)ncols, 0);
    int names = lua_gettop(L) + 1;
    for (int j = 0; j < ncols; j++) {
        lua_pushstring(L, PQfname(r, j));
        kinds[j] = oid_kind(PQftype(r, j));
    }
    if (one) {
        if (nrows == 0)
            lua_pushnil(L);
        else
            push_row(L, r, 0, ncols, names, kinds);
    } else {
        lua_createtable(L, nrows, 0);
        for (int i = 0; i < nrows; i++) {
            push_row(L, r, i, ncols, names, kinds);
            lua_rawseti(L, -2, i + 1);
        }
        const char *tuples = PQcmdTuples((PGresult *)r), *status = PQcmdStatus((PGresult *)r);
        lua_createtable(L, 0, 3);
        lua_pushinteger(L, tuples && *tuples ? (lua_Integer)strtoll(tuples, NULL, 10) : 0);
        lua_setfield(L, -2, "affected");
        lua_pushlstring(L, status ? status : "", status ? strcspn(status, " ") : 0);
        lua_setfield(L, -2, "command");
        lua_pushvalue(L, -1);
        lua_setfield(L, -2, "__index");
        lua_setmetatable(L, -2);
    }
    if (lua_gettop(L) > base + 1) {       /* the result above the names: move it down */
        lua_replace(L, base + 1);
        lua_settop(L, base + 1);
    }
    return 1;
}

/* ---- errors ---- */

static char error_mt_key;

static int error_tostring(lua_State *L)
{
    lua_getfield(L, 1, "severity");
    lua_getfield(L, 1, "code");
    lua_getfield(L, 1, "message");
    lua_pushfstring(L, "%s %s: %s", luaL_optstring(L, -3, "ERROR"), luaL_optstring(L, -2, "?"),
                    luaL_optstring(L, -1, ""));
    return 1;
}

static int error_concat(lua_State *L)
{
    luaL_tolstring(L, 1, NULL);
    luaL_tolstring(L, 2, NULL);
    lua_concat(L, 2);
    return 1;
}

void tr_pg_push_error(lua_State *L, const tr_pg_error *e)
{
    lua_createtable(L, 0, 4);
    if (e == NULL) {
        lua_pushliteral(L, "53200");
        lua_setfield(L, -2, "code");
        lua_pushliteral(L, "out of memory");
        lua_setfield(L, -2, "message");
        lua_pushliteral(L, "ERROR");
        lua_setfield(L, -2, "severity");
    } else {
        for (int i = 0; i < TR_PG_E_NFIELDS; i++)
            if (e->field[i]) {
                lua_pushstring(L, e->field[i]);
                lua_setfield(L, -2, tr_pg_error_names[i]);
            }
        if (e->unavailable) {
            lua_pushboolean(L, 1);
            lua_setfield(L, -2, "unavailable");
        }
    }
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &error_mt_key) == LUA_TNIL) {
        lua_pop(L, 1);
        lua_createtable(L, 0, 3);
        lua_pushcfunction(L, error_tostring);
        lua_setfield(L, -2, "__tostring");
        lua_pushcfunction(L, error_concat);
        lua_setfield(L, -2, "__concat");
        lua_pushliteral(L, "troupe.pg.error");
        lua_setfield(L, -2, "__name");
        lua_pushvalue(L, -1);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &error_mt_key);
    }
    lua_setmetatable(L, -2);
}

/* ---- parameters ---- */

/* The shortest of %.14g .. %.17g that reads back to d. */
static int fmt_double(char *b, size_t n, double d)
{
    if (isnan(d))
        return snprintf(b, n, "NaN");
    if (isinf(d))
        return snprintf(b, n, d > 0 ? "Infinity" : "-Infinity");
    int len = 0;
    for (int prec = 14; prec <= 17; prec++) {
        len = snprintf(b, n, "%.*g", prec, d);
        if (strtod(b, NULL) == d)
            break;
    }
    return len;
}

static int append_number(lua_State *L, int idx, tr_buf *b)
{
    char num[40];
    int len = lua_isinteger(L, idx)
                  ? snprintf(num, sizeof num, "%lld", (long long)lua_tointeger(L, idx))
                  : fmt_double(num, sizeof num, (double)lua_tonumber(L, idx));
    return tr_buf_append(b, num, (size_t)len);
}

/* Appends the array literal of the sequence at idx: 0, 1 when it is not one
 * (not a sequence, a value that has no place in an array), TR_ENOMEM. */
static int array_literal(lua_State *L, int idx, tr_buf *b, int depth)
{
    if (depth > 8 || !lua_checkstack(L, 4))
        return 1;
    idx = lua_absindex(L, idx);
    lua_Integer n = (lua_Integer)lua_rawlen(L, idx), count = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1 || lua_tointeger(L, -1) > n) {
            lua_pop(L, 1);
            return 1;
        }
        count++;
    }
    if (count != n)
        return 1;
    if (tr_buf_append(b, "{", 1))
        return TR_ENOMEM;
    for (lua_Integer i = 1; i <= n; i++) {
        int rc = 0;
        if (i > 1 && tr_buf_append(b, ",", 1))
            return TR_ENOMEM;
        switch (lua_rawgeti(L, idx, i)) {
        case LUA_TLIGHTUSERDATA:
            rc = lua_touserdata(L, -1) == NULL ? tr_buf_append(b, "NULL", 4) : 1;
            break;
        case LUA_TBOOLEAN:
            rc = lua_toboolean(L, -1) ? tr_buf_append(b, "true", 4) : tr_buf_append(b, "false", 5);
            break;
        case LUA_TNUMBER:
            rc = append_number(L, -1, b);
            break;
        case LUA_TSTRING: {
            size_t len;
            const char *s = lua_tolstring(L, -1, &len);
            if (memchr(s, 0, len)) {
                rc = 1;
                break;
            }
            rc = tr_buf_reserve(b, 2 * len + 2);
            if (rc)
                break;
            b->data[b->len++] = '"';
            for (size_t k = 0; k < len; k++) {
                if (s[k] == '"' || s[k] == '\\')
                    b->data[b->len++] = '\\';
                b->data[b->len++] = s[k];
            }
            b->data[b->len++] = '"';
            break;
        }
        case LUA_TTABLE:
            rc = array_literal(L, -1, b, depth + 1);
            break;
        default:
            rc = 1;
            break;
        }
        lua_pop(L, 1);
        if (rc)
            return rc;
    }
    return tr_buf_append(b, "}", 1);
}

/* Offsets are stored +1 so that 0 still means "none". */
#define OFF(x) ((const char *)(uintptr_t)((x) + 1))

int tr_pg_param_encode(lua_State *L, int idx, tr_pg_param *p, tr_buf *b, const char **why)
{
    memset(p, 0, sizeof *p);
    size_t start = b->len;
    switch (lua_type(L, idx)) {
    case LUA_TNONE:
    case LUA_TNIL:
        p->kind = TR_PG_PARAM_NULL;
        return 0;
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == NULL) {
            p->kind = TR_PG_PARAM_NULL;
            return 0;
        }
        *why = "cannot pass a pid as a parameter";
        return TR_EINVAL;
    case LUA_TBOOLEAN:
        p->kind = TR_PG_PARAM_TEXT;
        if (tr_buf_append(b, lua_toboolean(L, idx) ? "true" : "false",
                          lua_toboolean(L, idx) ? 4 : 5))
            return TR_ENOMEM;
        break;
    case LUA_TNUMBER:
        p->kind = TR_PG_PARAM_TEXT;
        if (append_number(L, idx, b))
            return TR_ENOMEM;
        break;
    case LUA_TSTRING:
        p->kind = TR_PG_PARAM_BYTES;
        p->data = lua_tolstring(L, idx, &p->len);   /* anchored by the caller's stack */
        return 0;
    case LUA_TTABLE: {
        p->kind = TR_PG_PARAM_TABLE;
        int rc = array_literal(L, idx, b, 0);
        if (rc == TR_ENOMEM)
            return rc;
        if (rc == 0) {
            p->data = OFF(start);
            p->len = b->len - start;
        } else {
            b->len = start;
        }
        size_t js = b->len;
        const char *jerr = NULL;
        rc = tr_json_encode(L, idx, b, &jerr);
        if (rc == TR_ENOMEM)
            return rc;
        if (rc == 0) {
            p->json = OFF(js);
            p->json_len = b->len - js;
        }
        if (p->data == NULL && p->json == NULL) {
            *why = jerr ? jerr : "a table that is neither an array nor JSON";
            return TR_EINVAL;
        }
        return 0;
    }
    default:
        *why = lua_type(L, idx) == LUA_TFUNCTION ? "cannot pass a function as a parameter"
                                                 : "cannot pass this type as a parameter";
        return TR_EINVAL;
    }
    p->data = OFF(start);
    p->len = b->len - start;
    return 0;
}

void tr_pg_params_fix(tr_pg_param *p, int n, const tr_buf *b)
{
    for (int i = 0; i < n; i++) {
        if (p[i].kind != TR_PG_PARAM_TEXT && p[i].kind != TR_PG_PARAM_TABLE)
            continue;
        if (p[i].data)
            p[i].data = b->data + ((uintptr_t)p[i].data - 1);
        if (p[i].json)
            p[i].json = b->data + ((uintptr_t)p[i].json - 1);
    }
}
