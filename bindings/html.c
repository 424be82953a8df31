/*
 * bindings/html.c — the troupe.html Lua module: HTML escaping in C.
 *
 *   local html = require "troupe.html"
 *   html.escape('<a href="x">Tom & Jerry\'s</a>')
 *     --> &lt;a href=&quot;x&quot;&gt;Tom &amp; Jerry&#39;s&lt;/a&gt;
 *
 * Escapes the five characters that matter in text and in quoted attribute values
 * (& < > " '), as the escape-html package of express does; every other byte,
 * UTF-8 included, passes through. A string with none of them is returned as it is
 * (no new string). Numbers are converted as tostring would; anything else raises.
 * In Lua a gsub over a character class costs about 1.4 us per 60-byte string; this
 * is some 20 times faster (/fortunes spent most of its Lua time there).
 */
#include <string.h>

#include <lauxlib.h>

#include "html.h"

static const char *replacement(unsigned char c, size_t *n)
{
    switch (c) {
    case '&':  *n = 5; return "&amp;";
    case '<':  *n = 4; return "&lt;";
    case '>':  *n = 4; return "&gt;";
    case '"':  *n = 6; return "&quot;";
    case '\'': *n = 5; return "&#39;";
    default:   return NULL;
    }
}

static int l_escape(lua_State *L)
{
    size_t len, n;
    const char *s = luaL_checklstring(L, 1, &len);
    size_t i = 0;
    while (i < len && replacement((unsigned char)s[i], &n) == NULL)
        i++;
    if (i == len) {                         /* nothing to escape: the string itself */
        if (lua_type(L, 1) != LUA_TSTRING)
            lua_pushlstring(L, s, len);     /* a number: its string form */
        else
            lua_settop(L, 1);
        return 1;
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    size_t from = 0;
    for (; i < len; i++) {
        const char *r = replacement((unsigned char)s[i], &n);
        if (r == NULL)
            continue;
        luaL_addlstring(&b, s + from, i - from);
        luaL_addlstring(&b, r, n);
        from = i + 1;
    }
    luaL_addlstring(&b, s + from, len - from);
    luaL_pushresult(&b);
    return 1;
}

int luaopen_troupe_html(lua_State *L)
{
    static const luaL_Reg fns[] = {
        { "escape", l_escape },
        { NULL, NULL }
    };
    luaL_newlib(L, fns);
    return 1;
}
