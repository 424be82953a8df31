/*
 * fuzz_codec.c — libFuzzer harness for the Lua value codec (`make fuzz`).
 *
 * Each input goes through tr_codec_decode_protected. A failure must be a clean
 * TR_EINVAL with a message and nothing pushed. A success V1 must survive the round
 * trip: encode(V1) = E1 must succeed (whatever decodes is sendable), decode(E1) = V2
 * must succeed and deep-equal V1, and encode(V2) = E2 must have E1's length.
 *
 * Why not E1 == E2 byte for byte: the hash part of a table is written in lua_next
 * order, which depends on the table's insertion history (collision chains), and V2's
 * tables are built in E1's order, not V1's. The array count, every scalar's encoding
 * and the set of pairs depend on the content only, so equal values encode to equal
 * lengths; the content itself is checked by the deep comparison, which compares
 * floats by their bits (NaN, -0.0), integers and floats as distinct, and matches
 * table keys by content.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                 \
    do {                                                                            \
        if (!(cond)) {                                                              \
            fprintf(stderr, "fuzz_codec: check failed: %s (line %d)\n", #cond,      \
                    __LINE__);                                                      \
            abort();                                                                \
        }                                                                           \
    } while (0)

/* Deep equality of the values at absolute indexes a and b. */
static int same(lua_State *L, int a, int b)
{
    int t = lua_type(L, a);
    if (t != lua_type(L, b))
        return 0;
    if (t == LUA_TNUMBER) {
        if (lua_isinteger(L, a) != lua_isinteger(L, b))
            return 0;
        if (lua_isinteger(L, a))
            return lua_tointeger(L, a) == lua_tointeger(L, b);
        lua_Number x = lua_tonumber(L, a), y = lua_tonumber(L, b);
        return memcmp(&x, &y, sizeof x) == 0;
    }
    if (t != LUA_TTABLE)
        return lua_rawequal(L, a, b);

    CHECK(lua_checkstack(L, 8));
    int top = lua_gettop(L), eq = 1;
    long na = 0, nb = 0;
    lua_newtable(L);                                  /* used: b's matched table keys */
    int used = top + 1, k = top + 2, v = top + 3;
    lua_pushnil(L);
    while (eq && lua_next(L, a)) {                    /* used k v */
        na++;
        if (lua_type(L, k) == LUA_TTABLE) {
            eq = 0;
            lua_pushnil(L);
            while (lua_next(L, b)) {                  /* used k v kb vb */
                if (lua_type(L, -2) == LUA_TTABLE) {
                    lua_pushvalue(L, -2);
                    int taken = lua_rawget(L, used) != LUA_TNIL;
                    lua_pop(L, 1);
                    if (!taken && same(L, top + 4, k) && same(L, top + 5, v)) {
                        lua_pushvalue(L, top + 4);
                        lua_pushboolean(L, 1);
                        lua_rawset(L, used);
                        eq = 1;
                        break;
                    }
                }
                lua_pop(L, 1);
            }
            lua_settop(L, v);
        } else {
            lua_pushvalue(L, k);
            lua_rawget(L, b);
            eq = same(L, v, top + 4);
            lua_pop(L, 1);
        }
        lua_pop(L, 1);                                /* used k */
    }
    lua_settop(L, used);
    if (eq) {
        lua_pushnil(L);
        while (lua_next(L, b)) {
            nb++;
            lua_pop(L, 1);
        }
    }
    lua_settop(L, top);
    return eq && na == nb;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static lua_State *L;
    static tr_buf e1, e2;                 /* reused: warm buffers, like the runtime's */
    const char *err = NULL;

    if (L == NULL) {
        L = luaL_newstate();
        CHECK(L != NULL);
    }
    int rc = tr_codec_decode_protected(L, (const char *)data, size, &err);
    if (rc != 0) {
        CHECK(rc == TR_EINVAL);
        CHECK(err != NULL);
        CHECK(lua_gettop(L) == 0);
        return 0;
    }
    CHECK(lua_gettop(L) == 1);

    e1.len = 0;
    rc = tr_codec_encode(L, 1, &e1, &err);
    if (rc != 0)
        fprintf(stderr, "fuzz_codec: decoded value does not encode: %s\n", err);
    CHECK(rc == 0);

    rc = tr_codec_decode_protected(L, e1.data, e1.len, &err);
    if (rc != 0)
        fprintf(stderr, "fuzz_codec: re-encoding does not decode: %s\n", err);
    CHECK(rc == 0);
    CHECK(lua_gettop(L) == 2);
    CHECK(same(L, 1, 2));

    e2.len = 0;
    CHECK(tr_codec_encode(L, 2, &e2, &err) == 0);
    CHECK(e2.len == e1.len);

    lua_settop(L, 0);
    return 0;
}
