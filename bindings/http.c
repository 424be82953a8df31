/*
 * http.c — troupe.http: the server's side of a request, for the framework
 * (scripts/troupe/app.lua). A request is named by an integer handle; a handle whose
 * request is over (or whose client is gone) is refused with nil, "closed".
 *
 *   header(h, name) -> value | nil     headers(h) -> { lowercase name = value }
 *   respond(h, status, body, content_type, headers) -> true | nil, "closed"
 *   respond_json(h, status, value, headers) -> true | nil, "closed"
 *   write(h, chunk, status, content_type, headers) -> true | nil, "closed"
 *   finish(h) -> true | nil, "closed"        sent(h) -> boolean
 *
 * Misuse raises: a bad status, a header that could split the response, a second
 * response, a value JSON cannot encode.
 */
#include <string.h>

#include <lauxlib.h>

#include "http.h"
#include "json.h"
#include "lactor.h"

#define MAX_OUT_HEADERS 64

static tr_http_req *check_req(lua_State *L, tr_http_worker **hwp)
{
    tr_http_worker *hw = tr_http_worker_of(L);
    if (hw == NULL)
        luaL_error(L, "troupe.http: not inside an HTTP handler VM");
    lua_Integer h = luaL_checkinteger(L, 1);
    if (hwp)
        *hwp = hw;
    return tr_http_lookup(hw, (uint64_t)h);
}

static int closed(lua_State *L)
{
    lua_pushnil(L);
    lua_pushliteral(L, "closed");
    return 2;
}

static int lower_eq(const char *a, size_t n, const char *b, size_t m)
{
    if (n != m)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
        if (x >= 'A' && x <= 'Z')
            x = (unsigned char)(x + 32);
        if (y >= 'A' && y <= 'Z')
            y = (unsigned char)(y + 32);
        if (x != y)
            return 0;
    }
    return 1;
}

/* Header values without their trailing whitespace (the parser keeps it). */
static size_t trimmed(const char *v, size_t n)
{
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    return n;
}

static int l_header(lua_State *L)
{
    tr_http_req *r = check_req(L, NULL);
    size_t klen;
    const char *key = luaL_checklstring(L, 2, &klen);
    if (r == NULL)
        return closed(L);
    const char *name, *value;
    size_t nlen, vlen;
    int found = 0;
    luaL_Buffer b;
    for (uint32_t i = 0; tr_http_header_at(r, i, &name, &nlen, &value, &vlen) == 0; i++) {
        if (!lower_eq(name, nlen, key, klen))
            continue;
        vlen = trimmed(value, vlen);
        if (found == 0) {
            luaL_buffinit(L, &b);
        } else {
            luaL_addlstring(&b, ", ", 2);
        }
        luaL_addlstring(&b, value, vlen);
        found++;
    }
    if (!found)
        lua_pushnil(L);
    else
        luaL_pushresult(&b);
    return 1;
}

static int l_headers(lua_State *L)
{
    tr_http_req *r = check_req(L, NULL);
    if (r == NULL)
        return closed(L);
    lua_createtable(L, 0, (int)tr_http_header_count(r));
    const char *name, *value;
    size_t nlen, vlen;
    char low[256];
    for (uint32_t i = 0; tr_http_header_at(r, i, &name, &nlen, &value, &vlen) == 0; i++) {
        if (nlen > sizeof low)
            continue;
        for (size_t k = 0; k < nlen; k++) {
            char ch = name[k];
            low[k] = (char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
        }
        vlen = trimmed(value, vlen);
        lua_pushlstring(L, low, nlen);
        lua_pushvalue(L, -1);
        if (lua_rawget(L, -3) == LUA_TSTRING) {   /* repeated: joined with ", " */
            lua_pushliteral(L, ", ");
            lua_pushlstring(L, value, vlen);
            lua_concat(L, 3);
        } else {
            lua_pop(L, 1);
            lua_pushlstring(L, value, vlen);
        }
        lua_rawset(L, -3);
    }
    return 1;
}

/* The string at the top of the stack, which is t[key] (t at idx, key just below
 * the value): a number is turned into a string in t itself (changing an existing
 * field while traversing is allowed), so that the pointer stays valid as long as t
 * holds it. */
static const char *field_string(lua_State *L, int t, size_t *len, const char *name)
{
    if (lua_type(L, -1) == LUA_TNUMBER) {
        lua_pushvalue(L, -2);                          /* key value key */
        lua_pushvalue(L, -2);
        lua_tolstring(L, -1, NULL);                    /* key value key "value" */
        lua_rawset(L, t);
        lua_pop(L, 1);
        lua_pushvalue(L, -1);
        lua_rawget(L, t);                              /* key "value" */
    }
    if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "troupe.http: header '%s' must be a string", name);
    return lua_tolstring(L, -1, len);
}

/* Collects the headers table at idx (nil allowed) into h; returns how many. Values
 * are strings (or numbers), or arrays of them for a repeated header (set-cookie). */
static size_t collect_headers(lua_State *L, int idx, tr_http_hdr *h)
{
    size_t n = 0;
    if (lua_isnoneornil(L, idx))
        return 0;
    luaL_checktype(L, idx, LUA_TTABLE);
    luaL_checkstack(L, 8, NULL);
    lua_pushnil(L);
    while (lua_next(L, idx)) {                         /* key value */
        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_error(L, "troupe.http: header names must be strings");
        size_t nlen;
        const char *name = lua_tolstring(L, -2, &nlen);
        if (lua_istable(L, -1)) {
            int arr = lua_gettop(L);
            lua_Integer len = (lua_Integer)lua_rawlen(L, arr);
            for (lua_Integer i = 1; i <= len; i++) {
                if (n >= MAX_OUT_HEADERS)
                    luaL_error(L, "troupe.http: too many headers");
                lua_pushinteger(L, i);
                lua_rawgeti(L, arr, i);                /* key value i v */
                h[n].value = field_string(L, arr, &h[n].vlen, name);
                h[n].name = name;
                h[n].nlen = nlen;
                n++;
                lua_pop(L, 2);
            }
        } else {
            if (n >= MAX_OUT_HEADERS)
                luaL_error(L, "troupe.http: too many headers");
            h[n].value = field_string(L, idx, &h[n].vlen, name);
            h[n].name = name;
            h[n].nlen = nlen;
            n++;
        }
        lua_pop(L, 1);
    }
    return n;
}

static int check_rc(lua_State *L, int rc)
{
    if (rc == 0) {
        lua_pushboolean(L, 1);
        return 1;
    }
    if (rc == TR_ESTATE)
        return luaL_error(L, "troupe.http: response already sent");
    if (rc == TR_EINVAL)
        return luaL_error(L, "troupe.http: bad status, or a header name or value that is "
                             "not allowed (CR, LF, a non-token name, or one the server sets)");
    lua_pushnil(L);
    lua_pushstring(L, tr_strerror(rc));
    return 2;
}

static int l_respond(lua_State *L)
{
    tr_http_req *r = check_req(L, NULL);
    int status = (int)luaL_checkinteger(L, 2);
    size_t blen = 0, ctlen = 0;
    const char *body = luaL_optlstring(L, 3, "", &blen);
    const char *ctype = luaL_optlstring(L, 4, NULL, &ctlen);
    tr_http_hdr h[MAX_OUT_HEADERS];
    size_t nh = collect_headers(L, 5, h);
    if (r == NULL)
        return closed(L);
    return check_rc(L, tr_http_respond(r, status, ctype, ctype ? ctlen : 0, h, nh, body, blen));
}

static int l_respond_json(lua_State *L)
{
    tr_http_worker *hw;
    tr_http_req *r = check_req(L, &hw);
    int status = (int)luaL_checkinteger(L, 2);
    luaL_checkany(L, 3);
    tr_http_hdr h[MAX_OUT_HEADERS];
    size_t nh = collect_headers(L, 4, h);
    if (r == NULL)
        return closed(L);
    tr_buf *b = tr_http_scratch(hw);
    b->len = 0;
    const char *err = NULL;
    int rc = tr_json_encode(L, 3, b, &err);
    if (rc == TR_EINVAL)
        return luaL_error(L, "troupe.http: %s", err);
    if (rc < 0)
        return check_rc(L, rc);
    return check_rc(L, tr_http_respond(r, status, "application/json", 16, h, nh, b->data,
                                       b->len));
}

static int l_write(lua_State *L)
{
    tr_http_req *r = check_req(L, NULL);
    size_t len, ctlen = 0;
    const char *chunk = luaL_checklstring(L, 2, &len);
    if (r == NULL)
        return closed(L);
    if (!tr_http_streaming(r)) {
        int status = (int)luaL_optinteger(L, 3, 200);
        const char *ctype = luaL_optlstring(L, 4, "text/plain; charset=utf-8", &ctlen);
        tr_http_hdr h[MAX_OUT_HEADERS];
        size_t nh = collect_headers(L, 5, h);
        int rc = tr_http_stream_begin(r, status, ctype, ctlen, h, nh);
        if (rc < 0)
            return check_rc(L, rc);
    }
    return check_rc(L, tr_http_stream_write(r, chunk, len));
}

static int l_finish(lua_State *L)
{
    tr_http_req *r = check_req(L, NULL);
    if (r == NULL)
        return closed(L);
    if (!tr_http_streaming(r)) {
        lua_pushboolean(L, 1);
        return 1;
    }
    return check_rc(L, tr_http_stream_end(r));
}

static int l_sent(lua_State *L)
{
    tr_http_req *r = check_req(L, NULL);
    lua_pushboolean(L, r == NULL || tr_http_started(r));
    return 1;
}

static const luaL_Reg funcs[] = {
    { "header", l_header },
    { "headers", l_headers },
    { "respond", l_respond },
    { "respond_json", l_respond_json },
    { "write", l_write },
    { "finish", l_finish },
    { "sent", l_sent },
    { NULL, NULL }
};

int luaopen_troupe_http(lua_State *L)
{
    luaL_newlib(L, funcs);
    return 1;
}
