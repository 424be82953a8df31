/* test_codec.c — Lua values <-> bytes: round trips of every type, the exact messages of
 * refused values, and malformed input (prefixes, random bytes, huge lengths, trailing
 * bytes, out of memory) that must fail cleanly. Each test runs its own lua_State on an
 * allocator over tr_realloc, and ends by proving every block was freed. */
#include "harness.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>

#include <lauxlib.h>
#include <lualib.h>

#include "codec.h"

/* ---- a lua_State whose allocator counts, and can be made to fail ------------------ */

typedef struct lalloc {
    long   fail_after;   /* < 0: never fail; else growths left before every one fails */
    size_t largest;      /* largest block asked for since reset */
    size_t grown;        /* bytes of growth asked for since reset */
} lalloc;

static void *test_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    lalloc *a = ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        tr_free(ptr);
        return NULL;
    }
    if (nsize > old) {                        /* shrinking must never fail */
        if (a->fail_after == 0)
            return NULL;
        if (a->fail_after > 0)
            a->fail_after--;
        a->grown += nsize - old;
    }
    if (nsize > a->largest)
        a->largest = nsize;
    return tr_realloc(ptr, nsize);
}

static void reset_alloc(lalloc *a)
{
    a->largest = 0;
    a->grown = 0;
}

/* deepeq(a, b): equal content, with the float subtype, the sign of zero and NaN
 * compared too; tables compared raw, table keys matched by content. */
static const char deepeq_lua[] =
    "function deepeq(a, b)\n"
    "  local ta = type(a)\n"
    "  if ta ~= type(b) then return false end\n"
    "  if ta == 'number' then\n"
    "    if math.type(a) ~= math.type(b) then return false end\n"
    "    if a ~= a then return b ~= b end\n"
    "    if a == 0 and math.type(a) == 'float' then return 1/a == 1/b end\n"
    "    return a == b\n"
    "  end\n"
    "  if ta ~= 'table' then return a == b end\n"
    "  local n, used = 0, {}\n"
    "  for k, v in next, a do\n"
    "    n = n + 1\n"
    "    if type(k) == 'table' then\n"
    "      local found = false\n"
    "      for k2, v2 in next, b do\n"
    "        if type(k2) == 'table' and not used[k2] and deepeq(k, k2) and deepeq(v, v2) then\n"
    "          used[k2], found = true, true\n"
    "          break\n"
    "        end\n"
    "      end\n"
    "      if not found then return false end\n"
    "    elseif not deepeq(v, rawget(b, k)) then\n"
    "      return false\n"
    "    end\n"
    "  end\n"
    "  for _ in next, b do n = n - 1 end\n"
    "  return n == 0\n"
    "end\n";

static lua_State *open_state(lalloc *a)
{
    tr_alloc_track(1);
    a->fail_after = -1;
    reset_alloc(a);
    lua_State *L = lua_newstate(test_alloc, a);
    assert_non_null(L);
    luaL_openlibs(L);
    assert_int_equal(luaL_dostring(L, deepeq_lua), LUA_OK);
    return L;
}

static void close_state(lua_State *L, tr_buf *b)
{
    tr_buf_free(b);
    lua_close(L);
    assert_int_equal(tr_alloc_live(), 0);
    tr_alloc_track(0);
}

/* Pushes the value of a Lua expression. */
static void push_expr(lua_State *L, const char *expr)
{
    char code[4096];
    snprintf(code, sizeof code, "return %s", expr);
    if (luaL_loadstring(L, code) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK)
        fail_msg("%s: %s", expr, lua_tostring(L, -1));
}

static int deepeq(lua_State *L, int a, int b)
{
    a = lua_absindex(L, a);
    b = lua_absindex(L, b);
    lua_getglobal(L, "deepeq");
    lua_pushvalue(L, a);
    lua_pushvalue(L, b);
    lua_call(L, 2, 1);
    int eq = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return eq;
}

/* Encodes the value on top, decodes it, checks the copy is deep-equal and pops both.
 * Returns the encoding's length. */
static size_t roundtrip(lua_State *L, tr_buf *b)
{
    const char *err = NULL;
    int top = lua_gettop(L);
    b->len = 0;
    int rc = tr_codec_encode(L, -1, b, &err);
    if (rc != 0)
        fail_msg("encode: %s", err);
    assert_int_equal(lua_gettop(L), top);
    rc = tr_codec_decode_protected(L, b->data, b->len, &err);
    if (rc != 0)
        fail_msg("decode: %s", err);
    assert_int_equal(lua_gettop(L), top + 1);
    assert_true(deepeq(L, -2, -1));
    lua_pop(L, 2);
    return b->len;
}

static size_t roundtrip_expr(lua_State *L, tr_buf *b, const char *expr)
{
    push_expr(L, expr);
    return roundtrip(L, b);
}

/* Decodes bytes expecting failure with message want; nothing may be pushed. */
static void expect_decode_error(lua_State *L, const void *data, size_t len, const char *want)
{
    const char *err = NULL;
    int top = lua_gettop(L);
    assert_int_equal(tr_codec_decode(L, data, len, &err), TR_EINVAL);
    assert_non_null(err);
    assert_string_equal(err, want);
    assert_int_equal(lua_gettop(L), top);
}

/* Encodes the value on top expecting failure with message want; the buffer (which
 * holds three bytes beforehand) and the stack must be as they were. */
static void expect_encode_error(lua_State *L, tr_buf *b, const char *want)
{
    const char *err = NULL;
    int top = lua_gettop(L);
    b->len = 0;
    lua_pushstring(L, "xyz");
    assert_int_equal(tr_codec_encode(L, -1, b, &err), 0);
    lua_pop(L, 1);
    assert_int_equal(tr_codec_encode(L, -1, b, &err), TR_EINVAL);
    assert_non_null(err);
    assert_string_equal(err, want);
    assert_int_equal(b->len, 4);
    assert_memory_equal(b->data, "\x43xyz", 4);
    assert_int_equal(lua_gettop(L), top);
    lua_pop(L, 1);
}

/* ---- round trips ----------------------------------------------------------------- */

static void test_scalars(void **state)
{
    (void)state;
    lalloc a;
    tr_buf b = {0};
    lua_State *L = open_state(&a);

    assert_int_equal(roundtrip_expr(L, &b, "nil"), 1);
    assert_int_equal(roundtrip_expr(L, &b, "true"), 1);
    assert_int_equal(roundtrip_expr(L, &b, "false"), 1);

    /* integers: 0..127 in one byte, the rest a tag and a zigzag varint */
    assert_int_equal(roundtrip_expr(L, &b, "0"), 1);
    assert_int_equal(roundtrip_expr(L, &b, "1"), 1);
    assert_int_equal(roundtrip_expr(L, &b, "127"), 1);
    assert_int_equal(roundtrip_expr(L, &b, "128"), 3);
    assert_int_equal(roundtrip_expr(L, &b, "-1"), 2);
    assert_int_equal(roundtrip_expr(L, &b, "-64"), 2);
    assert_int_equal(roundtrip_expr(L, &b, "-65"), 3);
    assert_int_equal(roundtrip_expr(L, &b, "1 << 31"), 6);
    assert_int_equal(roundtrip_expr(L, &b, "-(1 << 31)"), 6);
    assert_int_equal(roundtrip_expr(L, &b, "(1 << 31) - 1"), 6);
    assert_int_equal(roundtrip_expr(L, &b, "-(1 << 31) + 1"), 6);
    assert_int_equal(roundtrip_expr(L, &b, "-(1 << 27)"), 5);
    assert_int_equal(roundtrip_expr(L, &b, "math.maxinteger"), 11);
    assert_int_equal(roundtrip_expr(L, &b, "math.mininteger"), 11);
    assert_int_equal(roundtrip_expr(L, &b, "math.mininteger + 1"), 11);

    /* floats: 8 bytes, subtype and bits kept */
    assert_int_equal(roundtrip_expr(L, &b, "0.0"), 9);
    assert_int_equal(roundtrip_expr(L, &b, "-0.0"), 9);
    assert_int_equal(roundtrip_expr(L, &b, "1.0"), 9);
    assert_int_equal(roundtrip_expr(L, &b, "0.1"), 9);
    assert_int_equal(roundtrip_expr(L, &b, "1/0"), 9);
    assert_int_equal(roundtrip_expr(L, &b, "-1/0"), 9);
    assert_int_equal(roundtrip_expr(L, &b, "0/0"), 9);
    assert_int_equal(roundtrip_expr(L, &b, "2^53"), 9);
    assert_int_equal(roundtrip_expr(L, &b, "5e-324"), 9);
    assert_int_equal(roundtrip_expr(L, &b, "-1.7976931348623157e308"), 9);

    /* the sign of zero and NaN, checked in C as well */
    const char *err;
    lua_pushnumber(L, -0.0);
    b.len = 0;
    assert_int_equal(tr_codec_encode(L, -1, &b, &err), 0);
    assert_int_equal(tr_codec_decode_protected(L, b.data, b.len, &err), 0);
    assert_false(lua_isinteger(L, -1));
    assert_true(signbit(lua_tonumber(L, -1)));
    lua_pop(L, 2);
    lua_pushnumber(L, NAN);
    b.len = 0;
    assert_int_equal(tr_codec_encode(L, -1, &b, &err), 0);
    assert_int_equal(tr_codec_decode_protected(L, b.data, b.len, &err), 0);
    assert_true(isnan(lua_tonumber(L, -1)));
    lua_pop(L, 2);
    lua_pushnumber(L, 0.1);
    b.len = 0;
    assert_int_equal(tr_codec_encode(L, -1, &b, &err), 0);
    assert_int_equal(tr_codec_decode_protected(L, b.data, b.len, &err), 0);
    assert_true(lua_tonumber(L, -1) == 0.1);
    lua_pop(L, 2);

    /* strings: binary-safe; up to 63 bytes the length is in the tag */
    assert_int_equal(roundtrip_expr(L, &b, "''"), 1);
    assert_int_equal(roundtrip_expr(L, &b, "'hi'"), 3);
    assert_int_equal(roundtrip_expr(L, &b, "'a\\0b\\0'"), 5);
    assert_int_equal(roundtrip_expr(L, &b, "'\\0'"), 2);
    assert_int_equal(roundtrip_expr(L, &b, "string.rep('x', 63)"), 64);
    assert_int_equal(roundtrip_expr(L, &b, "string.rep('x', 64)"), 66);
    assert_int_equal(roundtrip_expr(L, &b, "string.rep('\\0\\255', 1 << 19)"), 1 + 3 + (1 << 20));

    close_state(L, &b);
}

static void test_known_bytes(void **state)
{
    (void)state;
    lalloc a;
    tr_buf b = {0};
    lua_State *L = open_state(&a);
    const char *err;

    push_expr(L, "{1, 2, x = 3}");
    assert_int_equal(tr_codec_encode(L, -1, &b, &err), 0);
    assert_int_equal(b.len, 8);
    assert_memory_equal(b.data, "\x06\x02\x01\x81\x82\x41x\x83", 8);
    lua_pop(L, 1);

    b.len = 0;
    lua_pushinteger(L, 300);
    assert_int_equal(tr_codec_encode(L, -1, &b, &err), 0);
    assert_int_equal(b.len, 3);
    assert_memory_equal(b.data, "\x03\xd8\x04", 3);
    lua_pop(L, 1);

    /* encodings append: two values in one buffer, each decodable from its offset */
    b.len = 0;
    lua_pushinteger(L, 5);
    lua_pushstring(L, "hi");
    assert_int_equal(tr_codec_encode(L, -2, &b, &err), 0);
    assert_int_equal(tr_codec_encode(L, -1, &b, &err), 0);
    assert_int_equal(b.len, 4);
    assert_memory_equal(b.data, "\x85\x42hi", 4);
    lua_pop(L, 2);
    assert_int_equal(tr_codec_decode(L, b.data + 1, 3, &err), 0);
    assert_string_equal(lua_tostring(L, -1), "hi");
    lua_pop(L, 1);

    /* an index with no value */
    b.len = 0;
    assert_int_equal(tr_codec_encode(L, lua_gettop(L) + 1, &b, &err), TR_EINVAL);
    assert_string_equal(err, "no value at that index");
    assert_int_equal(b.len, 0);

    close_state(L, &b);
}

static void test_tables(void **state)
{
    (void)state;
    lalloc a;
    tr_buf b = {0};
    lua_State *L = open_state(&a);

    assert_int_equal(roundtrip_expr(L, &b, "{}"), 3);
    assert_int_equal(roundtrip_expr(L, &b, "{1, 2, 3}"), 6);
    roundtrip_expr(L, &b, "{x = 1, y = 'two', z = {3}}");
    /* array part + hash part + float, boolean, negative, zero and table keys */
    roundtrip_expr(L, &b,
        "{10, 20, 30, 'forty', x = 1, [1.5] = 2, [-0.5] = 'h', [true] = 't', [false] = 'f',"
        " [0] = 'zero', [-1] = 'minus', [2^53] = 'float key', [math.maxinteger] = 1,"
        " [{1, 2}] = 'table key', [{}] = {}, nested = {a = {b = {c = 'd'}}},"
        " [1/0] = 'inf', [-0.0] = 'negzero'}");
    /* holes: the array part stops at the first nil, the rest goes to the hash part */
    assert_int_equal(roundtrip_expr(L, &b, "{1, 2, nil, 4}"), 7);
    roundtrip_expr(L, &b, "{nil, nil, 3}");
    roundtrip_expr(L, &b, "(function() local t = {} for i = 10, 1, -1 do t[i] = i end return t end)()");
    /* sequences that go on in the hash part (a key added while the hash part had a
     * free slot), whatever order lua_next visits them in */
    roundtrip_expr(L, &b, "(function() local t = {a = 1, b = 2, c = 3, d = 4, e = 5, f = 6, g = 7}"
                          " t[1] = 'one' return t end)()");
    roundtrip_expr(L, &b, "(function() local t = {1, 2, a = 1, b = 2, c = 3} t[3] = 3 return t end)()");
    for (int i = 0; i < 8; i++) {
        char expr[256];
        snprintf(expr, sizeof expr,
                 "(function() local t = {1, 2, %s = 1, b = 2, c = 3, d = 4, e = 5, f = 6, g = 7}"
                 " t[3] = 3 return t end)()", (const char *[]){"a", "h", "i", "j", "k", "l", "m", "n"}[i]);
        push_expr(L, expr);
        /* canonical: the array count is 3 whichever order the pairs come in */
        const char *err;
        b.len = 0;
        assert_int_equal(tr_codec_encode(L, -1, &b, &err), 0);
        assert_int_equal((unsigned char)b.data[1], 3);
        assert_int_equal((unsigned char)b.data[2], 7);
        roundtrip(L, &b);
    }
    /* counts of 128 and more need a wider varint, patched in after the elements */
    roundtrip_expr(L, &b,
        "(function() local t = {} for i = 1, 300 do t[i] = {i, tostring(i)} end"
        " for i = 1, 200 do t['k' .. i] = i * 1.5 end return t end)()");
    roundtrip_expr(L, &b, "(function() local t = {} for i = 1, 127 do t[i] = i end return t end)()");
    roundtrip_expr(L, &b, "(function() local t = {} for i = 1, 128 do t[i] = i end return t end)()");
    roundtrip_expr(L, &b, "(function() local t = {} for i = 1, 20000 do t[i] = i end return t end)()");
    roundtrip_expr(L, &b, "(function() local t = {} for i = 1, 20000 do t[-i] = i end return t end)()");

    /* a DAG is sent: the shared table arrives as two equal, distinct tables */
    push_expr(L, "(function() local s = {1, 'shared'} return {a = s, b = s, s} end)()");
    const char *err;
    b.len = 0;
    assert_int_equal(tr_codec_encode(L, -1, &b, &err), 0);
    assert_int_equal(tr_codec_decode_protected(L, b.data, b.len, &err), 0);
    assert_true(deepeq(L, -2, -1));
    lua_getfield(L, -1, "a");
    lua_getfield(L, -2, "b");
    assert_true(lua_istable(L, -1));
    assert_false(lua_rawequal(L, -1, -2));
    assert_true(deepeq(L, -1, -2));
    lua_pop(L, 4);

    /* metatables are dropped and never consulted (no __index, no __pairs) */
    push_expr(L, "setmetatable({1, x = 2}, {__index = function() return 'meta' end,"
                 " __pairs = function() error('no') end})");
    b.len = 0;
    assert_int_equal(tr_codec_encode(L, -1, &b, &err), 0);
    assert_int_equal(tr_codec_decode_protected(L, b.data, b.len, &err), 0);
    assert_false(lua_getmetatable(L, -1));
    assert_true(deepeq(L, -2, -1));
    lua_pop(L, 2);

    close_state(L, &b);
}

static void test_depth(void **state)
{
    (void)state;
    lalloc a;
    tr_buf b = {0};
    lua_State *L = open_state(&a);

    static const char nest[] =
        "(function(n) local t = {} local cur = t for i = 2, n do cur[1] = {} cur = cur[1] end"
        " cur[1] = 'leaf' return t end)(%d)";
    char expr[256];
    snprintf(expr, sizeof expr, nest, TR_CODEC_MAX_DEPTH);
    roundtrip_expr(L, &b, expr);
    /* also nested through keys */
    roundtrip_expr(L, &b,
        "(function() local t = {} local cur = t for i = 2, 64 do local k = {} cur[k] = true"
        " cur = k end return t end)()");

    snprintf(expr, sizeof expr, nest, TR_CODEC_MAX_DEPTH + 1);
    push_expr(L, expr);
    expect_encode_error(L, &b, "cannot send tables nested deeper than 64");

    /* the decoder's limit is the same: 64 nested tables decode, 65 do not */
    char msg[3 * 66 + 1];
    size_t n = 0;
    for (int i = 0; i < TR_CODEC_MAX_DEPTH; i++) {
        memcpy(msg + n, "\x06\x01\x00", 3);
        n += 3;
    }
    msg[n] = (char)0x81;
    const char *err;
    assert_int_equal(tr_codec_decode(L, msg, n + 1, &err), 0);
    lua_pop(L, 1);
    n = 0;
    for (int i = 0; i <= TR_CODEC_MAX_DEPTH; i++) {
        memcpy(msg + n, "\x06\x01\x00", 3);
        n += 3;
    }
    msg[n] = (char)0x81;
    expect_decode_error(L, msg, n + 1, "nesting too deep");

    close_state(L, &b);
}

static void test_cycles(void **state)
{
    (void)state;
    lalloc a;
    tr_buf b = {0};
    lua_State *L = open_state(&a);

    push_expr(L, "(function() local t = {} t.self = t return t end)()");
    expect_encode_error(L, &b, "cannot send a table with a cycle");
    push_expr(L, "(function() local t = {1} t[2] = t return t end)()");
    expect_encode_error(L, &b, "cannot send a table with a cycle");
    push_expr(L, "(function() local a = {} a.b = {c = {d = a}} return {x = a} end)()");
    expect_encode_error(L, &b, "cannot send a table with a cycle");
    push_expr(L, "(function() local t = {} t[t] = 1 return t end)()");
    expect_encode_error(L, &b, "cannot send a table with a cycle");
    /* a cycle longer than the depth limit is reported as too deep */
    push_expr(L, "(function() local t = {} local cur = t for i = 1, 70 do cur.n = {} cur = cur.n end"
                 " cur.n = t return t end)()");
    expect_encode_error(L, &b, "cannot send tables nested deeper than 64");

    close_state(L, &b);
}

static void test_refused_types(void **state)
{
    (void)state;
    lalloc a;
    tr_buf b = {0};
    lua_State *L = open_state(&a);

    push_expr(L, "print");
    expect_encode_error(L, &b, "cannot send a function");
    push_expr(L, "function() end");
    expect_encode_error(L, &b, "cannot send a function");
    push_expr(L, "{1, 2, {x = {print}}}");
    expect_encode_error(L, &b, "cannot send a function");
    push_expr(L, "{[print] = 1}");
    expect_encode_error(L, &b, "cannot send a function");

    lua_newuserdatauv(L, 16, 0);
    expect_encode_error(L, &b, "cannot send a userdata");
    push_expr(L, "{io.stdout}");
    expect_encode_error(L, &b, "cannot send a userdata");

    lua_newthread(L);
    expect_encode_error(L, &b, "cannot send a thread");
    push_expr(L, "{co = coroutine.create(print)}");
    expect_encode_error(L, &b, "cannot send a thread");

    close_state(L, &b);
}

static void test_pid(void **state)
{
    (void)state;
    lalloc a;
    tr_buf b = {0};
    lua_State *L = open_state(&a);
    const char *err;

    tr_pid pid = 0x0000000700000005ull;
    tr_codec_pushpid(L, pid);
    assert_int_equal(tr_codec_encode(L, -1, &b, &err), 0);
    assert_int_equal(b.len, 9);
    assert_int_equal(tr_codec_decode_protected(L, b.data, b.len, &err), 0);
    assert_int_equal(lua_type(L, -1), LUA_TLIGHTUSERDATA);
    assert_int_equal((uintptr_t)lua_touserdata(L, -1), (uintptr_t)pid);
    assert_int_equal(tr_codec_topid(L, -1), pid);
    assert_true(lua_rawequal(L, -1, -2));
    lua_pop(L, 2);

    /* pids inside tables, as keys and values */
    lua_createtable(L, 0, 2);
    tr_codec_pushpid(L, pid);
    lua_setfield(L, -2, "from");
    tr_codec_pushpid(L, ~(tr_pid)0);
    lua_pushstring(L, "max");
    lua_rawset(L, -3);
    roundtrip(L, &b);

    assert_int_equal(tr_codec_topid(L, 1 + lua_gettop(L)), TR_PID_NONE);
    close_state(L, &b);
}

/* ---- malformed input ---------------------------------------------------------------- */

/* A value with a bit of everything, counts >= 128 and long strings included. */
static const char rich_expr[] =
    "(function() local t = {1, -1, 300, 2.5, -0.0, 'short', string.rep('L', 200), true, false,"
    " {}, {{}}, x = {y = {z = 'deep'}}, [1.25] = math.mininteger, [false] = 0/0}"
    " local big = {} for i = 1, 130 do big[i] = i end t.big = big"
    " local h = {} for i = 1, 130 do h['k' .. i] = i end t.h = h return t end)()";

static void test_truncated_prefixes(void **state)
{
    (void)state;
    lalloc a;
    tr_buf b = {0};
    lua_State *L = open_state(&a);
    const char *err;

    push_expr(L, rich_expr);
    tr_codec_pushpid(L, 0x0000000700000005ull);
    lua_setfield(L, -2, "pid");
    assert_int_equal(tr_codec_encode(L, -1, &b, &err), 0);
    lua_pop(L, 1);
    assert_true(b.len > 600);
    for (size_t n = 0; n < b.len; n++)
        expect_decode_error(L, b.data, n, "truncated message");
    expect_decode_error(L, NULL, 0, "truncated message");
    assert_int_equal(tr_codec_decode(L, b.data, b.len, &err), 0);
    lua_pop(L, 1);

    close_state(L, &b);
}

static void test_trailing_bytes(void **state)
{
    (void)state;
    lalloc a;
    tr_buf b = {0};
    lua_State *L = open_state(&a);
    const char *err;

    push_expr(L, "{1, x = 'y'}");
    assert_int_equal(tr_codec_encode(L, -1, &b, &err), 0);
    assert_int_equal(tr_codec_encode(L, -1, &b, &err), 0);  /* two values */
    lua_pop(L, 1);
    expect_decode_error(L, b.data, b.len, "trailing bytes");
    expect_decode_error(L, "\x85\x00", 2, "trailing bytes");
    expect_decode_error(L, "\x00\x00", 2, "trailing bytes");

    close_state(L, &b);
}

static void test_malformed(void **state)
{
    (void)state;
    lalloc a;
    tr_buf b = {0};
    lua_State *L = open_state(&a);

    expect_decode_error(L, "\x08", 1, "bad tag");
    expect_decode_error(L, "\x3f", 1, "bad tag");
    expect_decode_error(L, "\x06\x01\x00\x20", 4, "bad tag");
    /* varints: overlong, more than 64 bits, more than 10 bytes */
    expect_decode_error(L, "\x03\x80\x00", 3, "bad varint");
    expect_decode_error(L, "\x03\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02", 11, "bad varint");
    expect_decode_error(L, "\x03\xff\xff\xff\xff\xff\xff\xff\xff\xff\x81\x00", 12, "bad varint");
    expect_decode_error(L, "\x05\x80\x00", 3, "bad varint");
    /* the largest 10-byte varint is fine: zigzag(mininteger) */
    const char *err;
    assert_int_equal(tr_codec_decode(L, "\x03\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 11, &err), 0);
    assert_true(lua_tointeger(L, -1) == LUA_MININTEGER);
    lua_pop(L, 1);
    /* the long forms of small values are accepted */
    assert_int_equal(tr_codec_decode(L, "\x03\x0a", 2, &err), 0);
    assert_int_equal(lua_tointeger(L, -1), 5);
    assert_int_equal(tr_codec_decode(L, "\x05\x02hi", 4, &err), 0);
    assert_string_equal(lua_tostring(L, -1), "hi");
    lua_pop(L, 2);
    /* nil and NaN keys, nil values */
    expect_decode_error(L, "\x06\x00\x01\x00\x81", 5, "bad table key");
    expect_decode_error(L, "\x06\x00\x01\x04\x00\x00\x00\x00\x00\x00\xf8\x7f\x81", 13, "bad table key");
    expect_decode_error(L, "\x06\x02\x00\x81\x00", 5, "nil table value");
    expect_decode_error(L, "\x06\x00\x01\x81\x00", 5, "nil table value");
    /* a repeated key keeps its last value */
    assert_int_equal(tr_codec_decode(L, "\x06\x01\x02\x81\x81\x82\x41x\x83", 9, &err), 0);
    push_expr(L, "{2, x = 3}");
    assert_true(deepeq(L, -1, -2));
    lua_pop(L, 2);
    /* a float key with an integer value becomes the integer key, as in Lua */
    assert_int_equal(tr_codec_decode(L, "\x06\x00\x01\x04\x00\x00\x00\x00\x00\x00\xf0\x3f\x85", 13, &err), 0);
    lua_rawgeti(L, -1, 1);
    assert_int_equal(lua_tointeger(L, -1), 5);
    lua_pop(L, 2);

    close_state(L, &b);
}

static void test_huge_lengths(void **state)
{
    (void)state;
    lalloc a;
    tr_buf b = {0};
    lua_State *L = open_state(&a);

    /* string of 2^40 bytes, table of 2^40 elements, 2^64 - 1 of both */
    reset_alloc(&a);
    expect_decode_error(L, "\x05\x80\x80\x80\x80\x80\x80\x01" "abc", 11, "truncated message");
    expect_decode_error(L, "\x06\x80\x80\x80\x80\x80\x80\x01\x00" "abc", 12, "truncated message");
    expect_decode_error(L, "\x06\x00\x80\x80\x80\x80\x80\x80\x01" "abc", 12, "truncated message");
    expect_decode_error(L, "\x05\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01" "abc", 14, "truncated message");
    expect_decode_error(L, "\x06\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01\x00" "abc", 15, "truncated message");
    /* hash pairs take two bytes each */
    expect_decode_error(L, "\x06\x00\x02\x81\x81\x81", 6, "truncated message");
    assert_true(a.largest < 4096);

    /* Nested tables each claiming the whole rest of the message: only the first
     * one's claim fits, so the decoder presizes O(message) memory, not 64 times it. */
    enum { N = 20000 };
    char *msg = calloc(N, 1);
    assert_non_null(msg);
    size_t n = 0;
    for (int i = 0; i < TR_CODEC_MAX_DEPTH; i++) {
        uint8_t hdr[12];
        uint64_t claim = N - n - 5;
        size_t k = 0;
        hdr[k++] = 0x06;
        while (claim >= 0x80) {
            hdr[k++] = (uint8_t)(claim | 0x80);
            claim >>= 7;
        }
        hdr[k++] = (uint8_t)claim;
        hdr[k++] = 0x00;
        memcpy(msg + n, hdr, k);
        n += k;
    }
    memset(msg + n, 0x81, N - n);
    reset_alloc(&a);
    expect_decode_error(L, msg, N, "truncated message");
    assert_true(a.grown < 40 * (size_t)N);
    free(msg);

    close_state(L, &b);
}

/* xorshift64*: a fixed sequence, the same on every run. */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

/* Decodes bytes that may or may not be valid. Whatever decodes must encode again and
 * decode to an equal value; whatever fails must leave the stack as it was. */
static void decode_anything(lua_State *L, tr_buf *b, const char *data, size_t len, int *ok)
{
    const char *err;
    int top = lua_gettop(L);
    int rc = tr_codec_decode_protected(L, data, len, &err);
    if (rc != 0) {
        assert_int_equal(rc, TR_EINVAL);
        assert_int_equal(lua_gettop(L), top);
        return;
    }
    (*ok)++;
    assert_int_equal(lua_gettop(L), top + 1);
    roundtrip(L, b);
}

static void test_random_bytes(void **state)
{
    (void)state;
    lalloc a;
    tr_buf b = {0}, valid = {0};
    lua_State *L = open_state(&a);
    uint64_t seed = 0x74726f757065ull;
    static const uint8_t useful[] = { 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
                                      0x41, 0x42, 0x81, 0x82, 0x06, 0x06, 0x01, 0x02 };
    char data[64];
    int ok = 0;

    /* random bytes, half of them from the format's own vocabulary */
    for (int iter = 0; iter < 5000; iter++) {
        size_t len = rng_next(&seed) % sizeof data;
        for (size_t i = 0; i < len; i++) {
            uint64_t r = rng_next(&seed);
            data[i] = (char)((r & 1) ? useful[(r >> 8) % sizeof useful] : (uint8_t)(r >> 16));
        }
        decode_anything(L, &b, data, len, &ok);
    }
    /* valid encodings with one to three bytes changed */
    push_expr(L, rich_expr);
    const char *err;
    assert_int_equal(tr_codec_encode(L, -1, &valid, &err), 0);
    lua_pop(L, 1);
    char *copy = malloc(valid.len);
    assert_non_null(copy);
    for (int iter = 0; iter < 2000; iter++) {
        memcpy(copy, valid.data, valid.len);
        int flips = 1 + (int)(rng_next(&seed) % 3);
        for (int i = 0; i < flips; i++) {
            uint64_t r = rng_next(&seed);
            copy[r % valid.len] = (char)(r >> 32);
        }
        decode_anything(L, &b, copy, valid.len, &ok);
    }
    free(copy);
    assert_true(ok > 100);  /* the vocabulary made some of them valid */

    tr_buf_free(&valid);
    close_state(L, &b);
}

/* ---- out of memory ---------------------------------------------------------------- */

static void test_decode_out_of_memory(void **state)
{
    (void)state;
    lalloc a;
    tr_buf b = {0};
    lua_State *L = open_state(&a);
    const char *err;

    push_expr(L, rich_expr);
    assert_int_equal(tr_codec_encode(L, -1, &b, &err), 0);
    int top = lua_gettop(L);

    long n;
    for (n = 0;; n++) {
        a.fail_after = n;
        int rc = tr_codec_decode_protected(L, b.data, b.len, &err);
        a.fail_after = -1;
        if (rc == 0) {
            assert_int_equal(lua_gettop(L), top + 1);
            assert_true(deepeq(L, -1, -2));
            lua_pop(L, 1);
            break;
        }
        assert_int_equal(rc, TR_ENOMEM);
        assert_string_equal(err, "out of memory");
        assert_int_equal(lua_gettop(L), top);
        /* the state is still usable */
        assert_int_equal(luaL_dostring(L, "local t = {} for i = 1, 100 do t[i] = tostring(i) end"
                                          " return #t"), LUA_OK);
        assert_int_equal(lua_tointeger(L, -1), 100);
        lua_pop(L, 1);
    }
    assert_true(n > 10);  /* failures were met at many points */
    lua_pop(L, 1);

    close_state(L, &b);
}

static void test_encode_out_of_memory(void **state)
{
    (void)state;
    lalloc a;
    tr_buf b = {0};
    lua_State *L = open_state(&a);
    const char *err;

    push_expr(L, rich_expr);
    push_expr(L, "string.rep('z', 100000)");
    lua_setfield(L, -2, "long");
    int top = lua_gettop(L);
    long n;
    for (n = 0;; n++) {
        b.len = 0;
        lua_pushstring(L, "xyz");              /* something already in the buffer */
        assert_int_equal(tr_codec_encode(L, -1, &b, &err), 0);
        lua_pop(L, 1);
        tr_alloc_fail_after(n);
        int rc = tr_codec_encode(L, -1, &b, &err);
        long pending = tr_alloc_fail_after(-1);
        if (rc == 0) {
            assert_true(pending >= 0);        /* no injected failure was reached */
            break;
        }
        assert_int_equal(rc, TR_ENOMEM);
        assert_string_equal(err, "out of memory");
        assert_int_equal(b.len, 4);
        assert_memory_equal(b.data, "\x43xyz", 4);
        assert_int_equal(lua_gettop(L), top);
        tr_buf_free(&b);
    }
    assert_true(n > 0);
    lua_pop(L, 1);

    close_state(L, &b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scalars),
        cmocka_unit_test(test_known_bytes),
        cmocka_unit_test(test_tables),
        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_cycles),
        cmocka_unit_test(test_refused_types),
        cmocka_unit_test(test_pid),
        cmocka_unit_test(test_truncated_prefixes),
        cmocka_unit_test(test_trailing_bytes),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_huge_lengths),
        cmocka_unit_test(test_random_bytes),
        cmocka_unit_test(test_decode_out_of_memory),
        cmocka_unit_test(test_encode_out_of_memory),
    };
    return cmocka_run_group_tests_name("codec", tests, NULL, NULL);
}
