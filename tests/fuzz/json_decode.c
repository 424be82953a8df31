/*
 * json_decode.c — libFuzzer harness for the JSON decoder (`make fuzz`).
 *
 * Each input goes through tr_json_decode_protected. A failure must be a clean
 * TR_EINVAL with an "invalid JSON at byte B: ..." message, B within the input (or
 * just past it), and nothing pushed. A success V1 must survive the round trip:
 * encode(V1) = E1 must succeed (whatever decodes is encodable), decode(E1) = V2 must
 * succeed and deep-equal V1, and encode(V2) = E2 must have E1's length.
 *
 * Deep equality: same types, numbers equal by value (a float that is integral comes
 * back as an integer: JSON does not tell them apart) with the sign of zero kept,
 * strings byte for byte, tables with the same mark (array or object metatable) and
 * the same pairs. Why not E1 == E2 byte for byte: object members go out in lua_next
 * order, which depends on each table's insertion history.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                 \
    do {                                                                            \
        if (!(cond)) {                                                              \
            fprintf(stderr, "json_decode: check failed: %s (line %d)\n", #cond,     \
                    __LINE__);                                                      \
            abort();                                                                \
        }                                                                           \
    } while (0)

/* Deep equality of the values at absolute indexes a and b (keys are strings or
 * integers: what the decoder makes). */
static int same(lua_State *L, int a, int b)
{
    int t = lua_type(L, a);
    if (t != lua_type(L, b))
        return 0;
    if (t == LUA_TNUMBER) {
        lua_Number x = lua_tonumber(L, a), y = lua_tonumber(L, b);
        if (x == 0 && y == 0 && !lua_isinteger(L, a) && !lua_isinteger(L, b))
            return 1 / x == 1 / y;
        return lua_compare(L, a, b, LUA_OPEQ);
    }
    if (t != LUA_TTABLE)
        return lua_rawequal(L, a, b);

    CHECK(lua_checkstack(L, 6));
    int top = lua_gettop(L), eq = 1;
    int ma = lua_getmetatable(L, a), mb = lua_getmetatable(L, b);
    if (ma != mb || (ma && !lua_rawequal(L, -1, -2)))
        eq = 0;
    lua_settop(L, top);
    long na = 0, nb = 0;
    lua_pushnil(L);
    while (eq && lua_next(L, a)) {                    /* k v */
        na++;
        lua_pushvalue(L, -2);
        lua_rawget(L, b);                             /* k v b[k] */
        eq = same(L, top + 2, top + 3);
        lua_pop(L, 2);                                /* k */
    }
    lua_settop(L, top);
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
    int rc = tr_json_decode_protected(L, (const char *)data, size, &err);
    if (rc != 0) {
        size_t at = 0;
        CHECK(rc == TR_EINVAL);
        CHECK(err != NULL);
        CHECK(sscanf(err, "invalid JSON at byte %zu: ", &at) == 1);
        CHECK(at >= 1 && at <= size + 1);
        CHECK(lua_gettop(L) == 0);
        return 0;
    }
    CHECK(lua_gettop(L) == 1);

    e1.len = 0;
    rc = tr_json_encode(L, 1, &e1, &err);
    if (rc != 0)
        fprintf(stderr, "json_decode: decoded value does not encode: %s\n", err);
    CHECK(rc == 0);

    rc = tr_json_decode_protected(L, e1.data, e1.len, &err);
    if (rc != 0)
        fprintf(stderr, "json_decode: re-encoding '%.*s' does not decode: %s\n",
                (int)e1.len, e1.data, err);
    CHECK(rc == 0);
    CHECK(lua_gettop(L) == 2);
    CHECK(same(L, 1, 2));

    e2.len = 0;
    CHECK(tr_json_encode(L, 2, &e2, &err) == 0);
    CHECK(e2.len == e1.len);

    lua_settop(L, 0);
    return 0;
}
