/*
 * bindings/json.c — the troupe.json module: JSON text <-> Lua values, in C.
 *
 * It is on the path of every HTTP request (res:json(t)), so both directions work
 * straight between the text and the Lua values: json_encode.c appends to a tr_buf
 * and creates no Lua value (the binding pushes the one string at the end, from a
 * buffer kept per module instance, so a warm encode allocates nothing else);
 * json_decode.c pushes values as it parses. This file holds what they share (the
 * marks, the escape table) and the Lua functions.
 *
 * Misuse raises (a value that cannot be JSON, a non-string to decode); invalid JSON
 * is an operational failure: decode returns nil and the message.
 */
#include <string.h>

#include <lauxlib.h>

#include "json_int.h"

/* Registry keys (their addresses) of the marks. */
const char tr__json_array_key = 'a', tr__json_object_key = 'o';

const double tr__json_pow10[23] = {
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
};

const char tr__json_escape[256] = {
    'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'b', 't', 'n', 'u', 'f', 'r', 'u', 'u',
    'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u',
    ['"'] = '"', ['\\'] = '\\',
};

void tr__json_push_mark(lua_State *L, int kind)
{
    const char *key = kind == TR__JSON_ARRAY ? &tr__json_array_key : &tr__json_object_key;
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, key) != LUA_TNIL)
        return;
    lua_pop(L, 1);
    lua_createtable(L, 0, 1);                 /* mt */
    lua_pushstring(L, kind == TR__JSON_ARRAY ? "json.array" : "json.object");
    lua_setfield(L, -2, "__name");            /* tostring(t): "json.array: 0x..." */
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, key);   /* mt */
}

void tr_json_pushnull(lua_State *L)
{
    lua_pushlightuserdata(L, NULL);
}

/* ---- the Lua module ------------------------------------------------------------- */

/* A buffer bigger than this after an encode is freed rather than kept for the next. */
#define KEEP_MAX (64 * 1024)

/* json.encode(value) -> string; raises when the value cannot be JSON. */
static int l_encode(lua_State *L)
{
    luaL_checkany(L, 1);
    tr_buf *b = lua_touserdata(L, lua_upvalueindex(1));
    const char *err;
    b->len = 0;
    int rc = tr_json_encode(L, 1, b, &err);
    if (unlikely(rc != 0)) {
        if (rc == TR_ENOMEM) {
            tr_buf_free(b);
            return luaL_error(L, "not enough memory");
        }
        return luaL_argerror(L, 1, err);
    }
    lua_pushlstring(L, b->data, b->len);
    if (b->cap > KEEP_MAX)
        tr_buf_free(b);
    return 1;
}

/* json.decode(s) -> value, or nil and "invalid JSON at byte B: WHAT". */
static int l_decode(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TSTRING);
    size_t n;
    const char *s = lua_tolstring(L, 1, &n), *err;
    int rc = tr_json_decode(L, s, n, &err);
    if (likely(rc == 0))
        return 1;
    if (rc == TR_ENOMEM)
        return luaL_error(L, "not enough memory");
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
}

/* json.array([t]) / json.object([t]) -> t (a new table when t is nil), marked. */
static int set_mark(lua_State *L, int kind)
{
    if (lua_isnoneornil(L, 1)) {
        lua_settop(L, 0);
        lua_newtable(L);
    } else {
        luaL_checktype(L, 1, LUA_TTABLE);
        lua_settop(L, 1);
        if (luaL_getmetafield(L, 1, "__metatable") != LUA_TNIL)
            return luaL_error(L, "cannot change a protected metatable");
    }
    tr__json_push_mark(L, kind);              /* t mark */
    lua_setmetatable(L, 1);
    return 1;
}

static int l_array(lua_State *L)
{
    return set_mark(L, TR__JSON_ARRAY);
}

static int l_object(lua_State *L)
{
    return set_mark(L, TR__JSON_OBJECT);
}

static int buffer_gc(lua_State *L)
{
    tr_buf_free(lua_touserdata(L, 1));
    return 0;
}

int luaopen_troupe_json(lua_State *L)
{
    static const luaL_Reg fns[] = {
        { "encode", l_encode }, { "decode", l_decode },
        { "array", l_array },   { "object", l_object },
        { NULL, NULL }
    };
    luaL_newlibtable(L, fns);                 /* json */
    tr_buf *b = lua_newuserdatauv(L, sizeof *b, 0);
    memset(b, 0, sizeof *b);                  /* json buf */
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, buffer_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    luaL_setfuncs(L, fns, 1);                 /* json: encode's buffer as upvalue 1 */
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");
    tr__json_push_mark(L, TR__JSON_ARRAY);
    tr__json_push_mark(L, TR__JSON_OBJECT);
    lua_pop(L, 2);
    return 1;
}
