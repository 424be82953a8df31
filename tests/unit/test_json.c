/* test_json.c — troupe.json: exact texts out of the encoder, exact values (and
 * integer/float subtypes) out of the decoder, every refusal with its message and byte
 * position, depth limits, random and truncated input, out of memory at every
 * allocation (Lua's and the buffer's), and the Lua module itself. Each test runs its
 * own lua_State on an allocator over tr_realloc and ends by proving every block was
 * freed. */
#include "harness.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>

#include <lauxlib.h>
#include <lualib.h>

#include "json.h"

/* ---- a lua_State whose allocator can be made to fail ------------------------------ */

typedef struct lalloc {
    long fail_after;     /* < 0: never fail; else growths left before every one fails */
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
    }
    return tr_realloc(ptr, nsize);
}

/* deepeq(a, b): equal content (numbers by value, -0.0 apart from 0), and the same
 * json mark (metatable) on every table. */
static const char deepeq_lua[] =
    "function deepeq(a, b)\n"
    "  if type(a) ~= type(b) then return false end\n"
    "  if type(a) == 'number' then\n"
    "    if a == 0 and b == 0 then return 1/a == 1/b end\n"
    "    return a == b\n"
    "  end\n"
    "  if type(a) ~= 'table' then return a == b end\n"
    "  if getmetatable(a) ~= getmetatable(b) then return false end\n"
    "  local n = 0\n"
    "  for k, v in next, a do\n"
    "    n = n + 1\n"
    "    if not deepeq(v, rawget(b, k)) then return false end\n"
    "  end\n"
    "  for _ in next, b do n = n - 1 end\n"
    "  return n == 0\n"
    "end\n";

static lua_State *open_state(lalloc *a)
{
    tr_alloc_track(1);
    a->fail_after = -1;
    lua_State *L = lua_newstate(test_alloc, a);
    assert_non_null(L);
    luaL_openlibs(L);
    luaL_requiref(L, "troupe.json", luaopen_troupe_json, 0);
    lua_setglobal(L, "json");
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

/* Runs Lua code (with json in scope), failing the test on an error. */
static void run(lua_State *L, const char *code)
{
    int top = lua_gettop(L);
    if (luaL_dostring(L, code) != LUA_OK)
        fail_msg("%s", lua_tostring(L, -1));
    lua_settop(L, top);
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

/* Encodes the value of expr and checks the text is exactly want. */
static void expect_text(lua_State *L, tr_buf *b, const char *expr, const char *want)
{
    const char *err = NULL;
    push_expr(L, expr);
    int top = lua_gettop(L);
    b->len = 0;
    int rc = tr_json_encode(L, -1, b, &err);
    if (rc != 0)
        fail_msg("encode %s: %s", expr, err);
    assert_int_equal(lua_gettop(L), top);
    if (b->len != strlen(want) || memcmp(b->data, want, b->len) != 0)
        fail_msg("encode %s: got '%.*s', want '%s'", expr, (int)b->len, b->data, want);
    lua_pop(L, 1);
}

/* Puts the text "xyz" (with its quotes) in b, as something already there. */
static void put_prefix(lua_State *L, tr_buf *b)
{
    b->len = 0;
    lua_pushliteral(L, "xyz");
    assert_int_equal(tr_json_encode(L, -1, b, NULL), 0);
    lua_pop(L, 1);
    assert_int_equal(b->len, 5);
}

/* Encodes the value of expr expecting failure with message want; the buffer (which
 * holds "xyz" beforehand) and the stack must be as they were. */
static void expect_encode_error(lua_State *L, tr_buf *b, const char *expr, const char *want)
{
    const char *err = NULL;
    push_expr(L, expr);
    int top = lua_gettop(L);
    put_prefix(L, b);
    int rc = tr_json_encode(L, -1, b, &err);
    if (rc != TR_EINVAL)
        fail_msg("encode %s: rc %d, want TR_EINVAL", expr, rc);
    assert_non_null(err);
    if (strcmp(err, want) != 0)
        fail_msg("encode %s: got '%s', want '%s'", expr, err, want);
    assert_int_equal(b->len, 5);
    assert_memory_equal(b->data, "\"xyz\"", 5);
    assert_int_equal(lua_gettop(L), top);
    lua_pop(L, 1);
}

/* Decodes text (n bytes) expecting success; leaves the value pushed. */
static void decode_ok(lua_State *L, const char *text, size_t n)
{
    const char *err = NULL;
    int top = lua_gettop(L);
    int rc = tr_json_decode_protected(L, text, n, &err);
    if (rc != 0)
        fail_msg("decode '%.*s': %s", (int)n, text, err);
    assert_int_equal(lua_gettop(L), top + 1);
}

/* Decodes text and checks the value deep-equals the Lua expression expr. */
static void expect_json(lua_State *L, const char *text, const char *expr)
{
    decode_ok(L, text, strlen(text));
    push_expr(L, expr);
    if (!deepeq(L, -1, -2))
        fail_msg("decode '%s' is not %s", text, expr);
    lua_pop(L, 2);
}

/* Decodes n bytes expecting TR_EINVAL with exactly the message want, nothing pushed. */
static void expect_error_n(lua_State *L, const char *text, size_t n, const char *want)
{
    const char *err = NULL;
    int top = lua_gettop(L);
    int rc = tr_json_decode_protected(L, text, n, &err);
    if (rc != TR_EINVAL)
        fail_msg("decode '%.*s': rc %d, want TR_EINVAL", (int)n, text, rc);
    assert_int_equal(lua_gettop(L), top);
    assert_non_null(err);
    if (strcmp(err, want) != 0)
        fail_msg("decode '%.*s': got '%s', want '%s'", (int)n, text, err, want);
}

static void expect_error(lua_State *L, const char *text, const char *want)
{
    expect_error_n(L, text, strlen(text), want);
}

/* ---- encoding --------------------------------------------------------------------- */

static void test_encode_scalars(void **state)
{
    (void)state;
    lalloc a;
    tr_buf b = {0};
    lua_State *L = open_state(&a);

    expect_text(L, &b, "nil", "null");
    expect_text(L, &b, "json.null", "null");
    expect_text(L, &b, "true", "true");
    expect_text(L, &b, "false", "false");

    expect_text(L, &b, "0", "0");
    expect_text(L, &b, "7", "7");
    expect_text(L, &b, "-1", "-1");
    expect_text(L, &b, "10", "10");
    expect_text(L, &b, "99", "99");
    expect_text(L, &b, "100", "100");
    expect_text(L, &b, "-12345", "-12345");
    expect_text(L, &b, "math.maxinteger", "9223372036854775807");
    expect_text(L, &b, "math.mininteger", "-9223372036854775808");

    /* integral floats print as integers, as JSON.stringify does; -0.0 keeps its sign */
    expect_text(L, &b, "1.0", "1");
    expect_text(L, &b, "-3.0", "-3");
    expect_text(L, &b, "0.0", "0");
    expect_text(L, &b, "-0.0", "-0");
    expect_text(L, &b, "2^53", "9007199254740992");
    expect_text(L, &b, "-2^63", "-9223372036854775808");
    expect_text(L, &b, "2^63", "9.223372036854776e+18");
    /* the shortest of %.14g .. %.17g that reads back */
    expect_text(L, &b, "0.1", "0.1");
    expect_text(L, &b, "1.5", "1.5");
    expect_text(L, &b, "-2.25", "-2.25");
    expect_text(L, &b, "1/3", "0.3333333333333333");
    expect_text(L, &b, "0.1 + 0.2", "0.30000000000000004");
    expect_text(L, &b, "math.pi", "3.141592653589793");
    expect_text(L, &b, "1e300", "1e+300");
    expect_text(L, &b, "1e-7", "1e-07");
    expect_text(L, &b, "5e-324", "4.9406564584125e-324");
    expect_text(L, &b, "1.7976931348623157e308", "1.7976931348623157e+308");
    expect_text(L, &b, "123456.789", "123456.789");
    /* short decimals take a path of their own; the same texts */
    expect_text(L, &b, "19.99", "19.99");
    expect_text(L, &b, "-0.5", "-0.5");
    expect_text(L, &b, "0.00001", "0.00001");
    expect_text(L, &b, "0.000012345", "0.000012345");
    expect_text(L, &b, "123456789.125", "123456789.125");
    expect_text(L, &b, "99999999999999.9", "99999999999999.9");
    expect_text(L, &b, "0.1 * 3", "0.30000000000000004");
    expect_text(L, &b, "3e-5 * 1.0000000000000002", "3.0000000000000008e-05");

    /* strings: quote, backslash and control characters escaped, the rest as is */
    expect_text(L, &b, "''", "\"\"");
    expect_text(L, &b, "'hello'", "\"hello\"");
    expect_text(L, &b, "'a\"b\\\\c/d'", "\"a\\\"b\\\\c/d\"");
    expect_text(L, &b, "'\\b\\f\\n\\r\\t'", "\"\\b\\f\\n\\r\\t\"");
    expect_text(L, &b, "'\\0\\1\\31\\127'", "\"\\u0000\\u0001\\u001f\x7f\"");
    expect_text(L, &b, "'caf\\u{e9} \\u{1F600}'", "\"caf\xc3\xa9 \xf0\x9f\x98\x80\"");
    expect_text(L, &b, "'\\255\\128'", "\"\xff\x80\"");   /* bytes pass unchecked */
    /* escapes at every position around the 8-byte scan */
    for (int len = 1; len <= 24; len++) {
        for (int at = 0; at < len; at++) {
            char expr[128], want[128];
            snprintf(expr, sizeof expr, "string.rep('x', %d) .. '\\n' .. string.rep('y', %d)",
                     at, len - at - 1);
            int n = snprintf(want, sizeof want, "\"%.*s\\n%.*s\"", at,
                             "xxxxxxxxxxxxxxxxxxxxxxxxxxxxx", len - at - 1,
                             "yyyyyyyyyyyyyyyyyyyyyyyyyyyyy");
            assert_true(n > 0);
            expect_text(L, &b, expr, want);
        }
    }
    /* a long string made mostly of escapes: the buffer grows along the way */
    push_expr(L, "string.rep('\\1\"', 5000)");
    b.len = 0;
    assert_int_equal(tr_json_encode(L, -1, &b, NULL), 0);
    assert_int_equal(b.len, 2 + 5000 * 8);
    assert_memory_equal(b.data, "\"\\u0001\\\"\\u0001", 15);
    lua_pop(L, 1);

    close_state(L, &b);
}

static void test_encode_tables(void **state)
{
    (void)state;
    lalloc a;
    tr_buf b = {0};
    lua_State *L = open_state(&a);

    expect_text(L, &b, "{}", "{}");
    expect_text(L, &b, "json.array({})", "[]");
    expect_text(L, &b, "json.array()", "[]");
    expect_text(L, &b, "json.object({})", "{}");
    expect_text(L, &b, "{1, 2, 3}", "[1,2,3]");
    expect_text(L, &b, "{'a', {true, false}, {}, json.null}", "[\"a\",[true,false],{},null]");
    expect_text(L, &b, "{x = 1}", "{\"x\":1}");
    expect_text(L, &b, "{message = 'Hello, World!'}", "{\"message\":\"Hello, World!\"}");
    expect_text(L, &b, "{['a\"b'] = {['\\n'] = {}}}", "{\"a\\\"b\":{\"\\n\":{}}}");
    expect_text(L, &b, "json.array({1, 2})", "[1,2]");
    expect_text(L, &b, "json.object({k = 'v'})", "{\"k\":\"v\"}");
    /* a sequence whose tail is in the hash part, or built backwards */
    expect_text(L, &b, "(function() local t = {} for i = 5, 1, -1 do t[i] = i end return t end)()",
                "[1,2,3,4,5]");
    expect_text(L, &b, "(function() local t = {1, 2} t[4] = 4 t[3] = 3 return t end)()",
                "[1,2,3,4]");
    expect_text(L, &b, "(function() local t = {} t[2] = 'b' t[1] = 'a' return t end)()",
                "[\"a\",\"b\"]");
    /* metatables other than the marks are ignored: the raw content goes out */
    expect_text(L, &b, "setmetatable({}, {__index = function() return 1 end,"
                       " __pairs = function() error('no') end})", "{}");
    expect_text(L, &b, "setmetatable({x = 1}, {__index = {y = 2}})", "{\"x\":1}");
    /* multi-key objects: every pair, in lua_next order */
    push_expr(L, "{a = 1, b = {2}, c = 'three'}");
    b.len = 0;
    assert_int_equal(tr_json_encode(L, -1, &b, NULL), 0);
    lua_pushlstring(L, b.data, b.len);
    lua_setglobal(L, "text");
    lua_pop(L, 1);
    run(L, "local n = 0 for k, v in text:gmatch('\"(%a)\":') do n = n + 1 end assert(n == 3)"
           " assert(#text == #'{\"a\":1,\"b\":[2],\"c\":\"three\"}')");
    /* a big array and a big object */
    push_expr(L, "(function() local t = {} for i = 1, 1000 do t[i] = i end return t end)()");
    b.len = 0;
    assert_int_equal(tr_json_encode(L, -1, &b, NULL), 0);
    assert_memory_equal(b.data, "[1,2,3,", 7);
    assert_memory_equal(b.data + b.len - 6, ",1000]", 6);
    lua_pop(L, 1);

    close_state(L, &b);
}

static void test_encode_refusals(void **state)
{
    (void)state;
    lalloc a;
    tr_buf b = {0};
    lua_State *L = open_state(&a);

    expect_encode_error(L, &b, "print", "cannot encode a function");
    expect_encode_error(L, &b, "{1, {x = {print}}}", "cannot encode a function");
    expect_encode_error(L, &b, "io.stdout", "cannot encode a userdata");
    expect_encode_error(L, &b, "coroutine.create(print)", "cannot encode a thread");
    lua_pushlightuserdata(L, &b);
    lua_setglobal(L, "ptr");
    expect_encode_error(L, &b, "ptr", "cannot encode a light userdata");
    expect_encode_error(L, &b, "0/0", "cannot encode NaN");
    expect_encode_error(L, &b, "{x = {-(0/0)}}", "cannot encode NaN");
    expect_encode_error(L, &b, "1/0", "cannot encode infinity");
    expect_encode_error(L, &b, "{-1/0}", "cannot encode infinity");

    /* keys */
    expect_encode_error(L, &b, "{1, 2, x = 3}", "cannot encode a table with mixed or sparse keys");
    expect_encode_error(L, &b, "{x = 3, [1] = 1}", "cannot encode a table with mixed or sparse keys");
    expect_encode_error(L, &b, "{1, nil, 3}", "cannot encode a table with mixed or sparse keys");
    expect_encode_error(L, &b, "{[2] = 'b'}", "cannot encode a table with mixed or sparse keys");
    expect_encode_error(L, &b, "{[0] = 'z', 'a'}", "cannot encode a table with mixed or sparse keys");
    expect_encode_error(L, &b, "{[-1] = 'n'}", "cannot encode a table with mixed or sparse keys");
    expect_encode_error(L, &b, "{[1] = 1, [1000000] = 2}",
                        "cannot encode a table with mixed or sparse keys");
    expect_encode_error(L, &b, "{[1.5] = 1}", "cannot encode a table with a float key");
    expect_encode_error(L, &b, "{1, [2.5] = 1}", "cannot encode a table with a float key");
    expect_encode_error(L, &b, "{[true] = 1}", "cannot encode a table with a boolean key");
    expect_encode_error(L, &b, "{x = 1, [{}] = 1}", "cannot encode a table with a table key");
    expect_encode_error(L, &b, "{[print] = 1}", "cannot encode a table with a function key");
    expect_encode_error(L, &b, "{[ptr] = 1}", "cannot encode a table with a light userdata key");
    expect_encode_error(L, &b, "{[io.stdout] = 1}", "cannot encode a table with a userdata key");
    expect_encode_error(L, &b, "{[coroutine.create(print)] = 1}",
                        "cannot encode a table with a thread key");
    expect_encode_error(L, &b, "json.array({x = 1})",
                        "cannot encode a json.array with non-sequence keys");
    expect_encode_error(L, &b, "json.array({1, x = 1})",
                        "cannot encode a json.array with non-sequence keys");
    expect_encode_error(L, &b, "json.array({[2] = 1})",
                        "cannot encode a json.array with non-sequence keys");
    expect_encode_error(L, &b, "json.object({1})",
                        "cannot encode a json.object with a non-string key");
    expect_encode_error(L, &b, "json.object({x = 1, [3] = 1})",
                        "cannot encode a json.object with a non-string key");

    /* cycles, through values and keys */
    expect_encode_error(L, &b, "(function() local t = {} t.self = t return t end)()",
                        "cannot encode a table with a cycle");
    expect_encode_error(L, &b, "(function() local t = {1} t[2] = t return t end)()",
                        "cannot encode a table with a cycle");
    expect_encode_error(L, &b, "(function() local a = {} a.b = {c = {a}} return {x = a} end)()",
                        "cannot encode a table with a cycle");
    /* a table met twice without a cycle is fine */
    expect_text(L, &b, "(function() local s = {1} return {s, s, {s}} end)()", "[[1],[1],[[1]]]");

    /* an index with no value */
    b.len = 0;
    const char *err;
    assert_int_equal(tr_json_encode(L, lua_gettop(L) + 1, &b, &err), TR_EINVAL);
    assert_string_equal(err, "no value at that index");
    assert_int_equal(b.len, 0);

    close_state(L, &b);
}

/* ---- decoding --------------------------------------------------------------------- */

static void test_decode_values(void **state)
{
    (void)state;
    lalloc a;
    tr_buf b = {0};
    lua_State *L = open_state(&a);

    expect_json(L, "true", "true");
    expect_json(L, "false", "false");
    expect_json(L, "null", "json.null");
    expect_json(L, " \t\r\n 1 \t\r\n ", "1");
    expect_json(L, "\"\"", "''");
    expect_json(L, "\"hello\"", "'hello'");
    expect_json(L, "[]", "json.array({})");
    expect_json(L, "{}", "json.object({})");
    expect_json(L, "[1, \"two\", [3], {\"four\": 4}, null, true]",
                 "json.array({1, 'two', json.array({3}), json.object({four = 4}), json.null, true})");
    expect_json(L, " { \"a\" : [ ] , \"b\" : { } } ",
                 "json.object({a = json.array(), b = json.object()})");
    /* a repeated key keeps its last value */
    expect_json(L, "{\"a\": 1, \"b\": 2, \"a\": 3}", "json.object({a = 3, b = 2})");
    /* keys are strings, even when they look like numbers */
    expect_json(L, "{\"1\": \"x\"}", "json.object({['1'] = 'x'})");

    /* big arrays and objects: past the point where elements stop waiting on the stack */
    for (int n = 250; n <= 1030; n += 130) {
        char *text = malloc((size_t)n * 24 + 16), expr[256];
        assert_non_null(text);
        size_t len = 0;
        text[len++] = '[';
        for (int i = 1; i <= n; i++)
            len += (size_t)sprintf(text + len, "%s%d", i > 1 ? "," : "", i * 3);
        text[len++] = ']';
        decode_ok(L, text, len);
        snprintf(expr, sizeof expr,
                 "(function() local t = json.array() for i = 1, %d do t[i] = i * 3 end return t end)()", n);
        push_expr(L, expr);
        assert_true(deepeq(L, -1, -2));
        lua_pop(L, 2);
        len = 0;
        text[len++] = '{';
        for (int i = 1; i <= n; i++)
            len += (size_t)sprintf(text + len, "%s\"k%d\":[%d]", i > 1 ? "," : "", i, i);
        text[len++] = '}';
        decode_ok(L, text, len);
        snprintf(expr, sizeof expr, "(function() local t = json.object() for i = 1, %d do"
                 " t['k' .. i] = json.array({i}) end return t end)()", n);
        push_expr(L, expr);
        assert_true(deepeq(L, -1, -2));
        lua_pop(L, 2);
        free(text);
    }

    close_state(L, &b);
}

/* Decodes text expecting a number: integer v when is_int, else float x (bits). */
static void expect_int(lua_State *L, const char *text, lua_Integer v)
{
    decode_ok(L, text, strlen(text));
    if (!lua_isinteger(L, -1))
        fail_msg("'%s' decoded to a float", text);
    if (lua_tointeger(L, -1) != v)
        fail_msg("'%s' decoded to %lld", text, (long long)lua_tointeger(L, -1));
    lua_pop(L, 1);
}

static void expect_float(lua_State *L, const char *text, double x)
{
    decode_ok(L, text, strlen(text));
    if (lua_type(L, -1) != LUA_TNUMBER || lua_isinteger(L, -1))
        fail_msg("'%s' did not decode to a float", text);
    double y = lua_tonumber(L, -1);
    if (memcmp(&x, &y, sizeof x) != 0)
        fail_msg("'%s' decoded to %.17g, want %.17g", text, y, x);
    lua_pop(L, 1);
}

/* xorshift64*: a fixed sequence, the same on every run. */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

/* 10^k, exact for k <= 22. */
static double pow10_int(int k)
{
    double x = 1;
    while (k-- > 0)
        x *= 10;
    return x;
}

static void test_decode_numbers(void **state)
{
    (void)state;
    lalloc a;
    tr_buf b = {0};
    lua_State *L = open_state(&a);

    expect_int(L, "0", 0);
    expect_int(L, "7", 7);
    expect_int(L, "-7", -7);
    expect_int(L, "1234567890", 1234567890);
    expect_int(L, "9007199254740993", 9007199254740993LL);   /* 2^53 + 1: exact */
    expect_int(L, "9223372036854775807", LUA_MAXINTEGER);
    expect_int(L, "-9223372036854775808", LUA_MININTEGER);
    expect_int(L, "-9223372036854775807", -LUA_MAXINTEGER);
    /* beyond int64, with a fraction or an exponent: floats */
    expect_float(L, "9223372036854775808", 9223372036854775808.0);
    expect_float(L, "-9223372036854775809", -9223372036854775809.0);
    expect_float(L, "18446744073709551616", 18446744073709551616.0);
    expect_float(L, "123456789012345678901234567890", 123456789012345678901234567890.0);
    expect_float(L, "1.0", 1.0);
    expect_float(L, "1e2", 100.0);
    expect_float(L, "1E2", 100.0);
    expect_float(L, "1e+2", 100.0);
    expect_float(L, "1e-2", 0.01);
    expect_float(L, "-0", -0.0);
    expect_float(L, "-0.0", -0.0);
    expect_float(L, "0.0", 0.0);
    expect_float(L, "0e10", 0.0);
    expect_float(L, "0.1", 0.1);
    expect_float(L, "0.30000000000000004", 0.30000000000000004);
    expect_float(L, "3.141592653589793", 3.141592653589793);
    expect_float(L, "-2.5e-3", -2.5e-3);
    expect_float(L, "0.000001", 1e-6);
    expect_float(L, "1e22", 1e22);
    expect_float(L, "1e23", 1e23);
    expect_float(L, "9007199254740993.0", 9007199254740992.0);  /* rounds to even */
    expect_float(L, "1.7976931348623157e308", DBL_MAX);
    expect_float(L, "-1.7976931348623157e308", -DBL_MAX);
    expect_float(L, "4.9406564584124654e-324", 5e-324);
    expect_float(L, "2.2250738585072014e-308", DBL_MIN);
    expect_float(L, "1e-400", 0.0);                           /* underflow: zero */
    expect_float(L, "0.00000000000000000000000000000000000000000000001", 1e-47);
    expect_float(L, "1.00000000000000000000000000000000000000000000001", 1.0);
    expect_float(L, "100000000000000000000000000000000000000000000000.0", 1e47);
    expect_float(L, "1e00000000000000000000000000000000000000000000002", 100.0);

    /* random doubles: %.17g and the encoder's own text both read back exactly */
    uint64_t seed = 0x6a736f6eull;
    char text[64];
    for (int i = 0; i < 20000; i++) {
        uint64_t bits = rng_next(&seed);
        double x;
        if (i % 2) {
            memcpy(&x, &bits, sizeof x);
            if (!isfinite(x))
                continue;
        } else {                              /* short decimals: the fast path */
            x = (double)(int64_t)(bits >> 40) / pow10_int((int)(bits % 12));
        }
        snprintf(text, sizeof text, "%.17g", x);
        decode_ok(L, text, strlen(text));
        assert_true(lua_tonumber(L, -1) == x);
        b.len = 0;
        assert_int_equal(tr_json_encode(L, -1, &b, NULL), 0);
        lua_pop(L, 1);
        decode_ok(L, b.data, b.len);
        double y = lua_tonumber(L, -1);
        if (memcmp(&x, &y, sizeof x) != 0 && !(x == 0 && y == 0))
            fail_msg("%.17g encoded as '%.*s' reads back as %.17g", x, (int)b.len, b.data, y);
        lua_pop(L, 1);
    }

    close_state(L, &b);
}

static void test_decode_strings(void **state)
{
    (void)state;
    lalloc a;
    tr_buf b = {0};
    lua_State *L = open_state(&a);

    expect_json(L, "\"a\\\"b\\\\c\\/d\"", "'a\"b\\\\c/d'");
    expect_json(L, "\"\\b\\f\\n\\r\\t\"", "'\\b\\f\\n\\r\\t'");
    expect_json(L, "\"\\u0041\\u00e9\\u00E9\\u20ac\"", "'A\\u{e9}\\u{e9}\\u{20ac}'");
    expect_json(L, "\"\\u0000x\\u001f\"", "'\\0x\\31'");
    expect_json(L, "\"\\ud83d\\ude00\"", "'\\u{1F600}'");
    expect_json(L, "\"\\uD834\\uDD1E!\"", "'\\u{1D11E}!'");
    expect_json(L, "\"\\udbff\\udfff\"", "'\\u{10FFFF}'");
    expect_json(L, "\"\\u07ff\\u0800\\uffff\"", "'\\u{7ff}\\u{800}\\u{ffff}'");
    expect_json(L, "\"caf\xc3\xa9 \xff\"", "'caf\\u{e9} \\255'");  /* bytes pass as they are */
    expect_json(L, "\"\x7f\"", "'\\127'");
    /* escapes in long strings (beyond the small scratch buffer) */
    run(L, "local s = string.rep('ab\\\\n\\\\u00e9', 300)"
           " local v = json.decode('\"' .. s .. '\"')"
           " assert(v == string.rep('ab\\n\\u{e9}', 300))"
           " local long = string.rep('x', 5000) .. '\\\\t'"
           " assert(json.decode('[\"' .. long .. '\", \"' .. long .. '!\"]')[2] =="
           "        string.rep('x', 5000) .. '\\t!')");
    /* every string at every length around the 8-byte scan reads back */
    run(L, "for n = 0, 40 do for _, c in ipairs({'x', '\\n', '\"', '\\\\', '\\1', '\\u{e9}'}) do"
           "  local s = string.rep('y', n) .. c .. string.rep('z', n % 9)"
           "  assert(json.decode(json.encode(s)) == s, n)"
           " end end");

    close_state(L, &b);
}

static void test_decode_errors(void **state)
{
    (void)state;
    lalloc a;
    tr_buf b = {0};
    lua_State *L = open_state(&a);

    /* where: byte 1 is the first; the end of input is byte n + 1 */
    expect_error(L, "{\"name\":\"troupe\"]", "invalid JSON at byte 17: expected ',' or '}'");
    expect_error(L, "", "invalid JSON at byte 1: unexpected end of input");
    expect_error_n(L, NULL, 0, "invalid JSON at byte 1: unexpected end of input");
    expect_error(L, "   ", "invalid JSON at byte 4: unexpected end of input");
    expect_error(L, "[", "invalid JSON at byte 2: unexpected end of input");
    expect_error(L, "[1", "invalid JSON at byte 3: unexpected end of input");
    expect_error(L, "[1,", "invalid JSON at byte 4: unexpected end of input");
    expect_error(L, "{", "invalid JSON at byte 2: unexpected end of input");
    expect_error(L, "{\"a\"", "invalid JSON at byte 5: unexpected end of input");
    expect_error(L, "{\"a\":", "invalid JSON at byte 6: unexpected end of input");
    expect_error(L, "{\"a\":1", "invalid JSON at byte 7: unexpected end of input");
    expect_error(L, "{\"a\":1,", "invalid JSON at byte 8: unexpected end of input");
    /* trailing commas, missing separators */
    expect_error(L, "[1,]", "invalid JSON at byte 4: trailing comma");
    expect_error(L, "[1, ]", "invalid JSON at byte 5: trailing comma");
    expect_error(L, "{\"a\":1,}", "invalid JSON at byte 8: trailing comma");
    expect_error(L, "[1 2]", "invalid JSON at byte 4: expected ',' or ']'");
    expect_error(L, "[1}", "invalid JSON at byte 3: expected ',' or ']'");
    expect_error(L, "{\"a\":1 \"b\":2}", "invalid JSON at byte 8: expected ',' or '}'");
    expect_error(L, "{\"a\" 1}", "invalid JSON at byte 6: expected ':'");
    expect_error(L, "{a:1}", "invalid JSON at byte 2: expected a string key");
    expect_error(L, "{'a':1}", "invalid JSON at byte 2: expected a string key");
    expect_error(L, "{,}", "invalid JSON at byte 2: expected a string key");
    expect_error(L, "{\"a\":1,,}", "invalid JSON at byte 8: expected a string key");
    expect_error(L, "{1:1}", "invalid JSON at byte 2: expected a string key");
    expect_error(L, "[,]", "invalid JSON at byte 2: expected a value");
    expect_error(L, "[1,,2]", "invalid JSON at byte 4: expected a value");
    expect_error(L, "]", "invalid JSON at byte 1: expected a value");
    expect_error(L, "{\"a\":}", "invalid JSON at byte 6: expected a value");
    /* not JSON: comments, single quotes, NaN, Infinity, a byte order mark */
    expect_error(L, "/* c */ 1", "invalid JSON at byte 1: comments are not allowed");
    expect_error(L, "[1, // c\n2]", "invalid JSON at byte 5: comments are not allowed");
    expect_error(L, "'a'", "invalid JSON at byte 1: expected a value");
    expect_error(L, "NaN", "invalid JSON at byte 1: expected a value");
    expect_error(L, "nan", "invalid JSON at byte 1: invalid literal");
    expect_error(L, "Infinity", "invalid JSON at byte 1: expected a value");
    expect_error(L, "-Infinity", "invalid JSON at byte 2: invalid number");
    expect_error(L, "\xef\xbb\xbf" "1", "invalid JSON at byte 1: expected a value");
    expect_error(L, "undefined", "invalid JSON at byte 1: expected a value");
    expect_error(L, "tru", "invalid JSON at byte 1: invalid literal");
    expect_error(L, "True", "invalid JSON at byte 1: expected a value");
    expect_error(L, "[nul]", "invalid JSON at byte 2: invalid literal");
    expect_error(L, "fals", "invalid JSON at byte 1: invalid literal");
    /* trailing data */
    expect_error(L, "falsey", "invalid JSON at byte 6: unexpected data after the value");
    expect_error(L, "[1]x", "invalid JSON at byte 4: unexpected data after the value");
    expect_error(L, "1 2", "invalid JSON at byte 3: unexpected data after the value");
    expect_error(L, "{} {}", "invalid JSON at byte 4: unexpected data after the value");
    expect_error_n(L, "1\0", 2, "invalid JSON at byte 2: unexpected data after the value");
    expect_error(L, "\"a\"\"b\"", "invalid JSON at byte 4: unexpected data after the value");
    /* numbers */
    expect_error(L, "01", "invalid JSON at byte 1: leading zero in number");
    expect_error(L, "[-012]", "invalid JSON at byte 2: leading zero in number");
    expect_error(L, "00.5", "invalid JSON at byte 1: leading zero in number");
    expect_error(L, "-", "invalid JSON at byte 2: invalid number");
    expect_error(L, "-a", "invalid JSON at byte 2: invalid number");
    expect_error(L, "[- 1]", "invalid JSON at byte 3: invalid number");
    expect_error(L, "1.", "invalid JSON at byte 3: invalid number");
    expect_error(L, "1.e5", "invalid JSON at byte 3: invalid number");
    expect_error(L, "1e", "invalid JSON at byte 3: invalid number");
    expect_error(L, "1e+", "invalid JSON at byte 4: invalid number");
    expect_error(L, "1E-x", "invalid JSON at byte 4: invalid number");
    expect_error(L, ".5", "invalid JSON at byte 1: expected a value");
    expect_error(L, "+1", "invalid JSON at byte 1: expected a value");
    expect_error(L, "0x10", "invalid JSON at byte 2: unexpected data after the value");
    expect_error(L, "1.5.2", "invalid JSON at byte 4: unexpected data after the value");
    expect_error(L, "1e400", "invalid JSON at byte 1: number out of range");
    expect_error(L, "-1e400", "invalid JSON at byte 1: number out of range");
    expect_error(L, "[1, 2e308]", "invalid JSON at byte 5: number out of range");
    expect_error(L, "1797693134862315800000000000000000000000000000000000000000000000000000"
                    "0000000000000000000000000000000000000000000000000000000000000000000000"
                    "0000000000000000000000000000000000000000000000000000000000000000000000"
                    "0000000000000000000000000000000000000000000000000000000000000000000000"
                    "000000000000000000000000000000000000000000000000000000000000000000000",
                 "invalid JSON at byte 1: number out of range");
    expect_error(L, "1e99999999999999999999", "invalid JSON at byte 1: number out of range");
    /* strings */
    expect_error(L, "\"abc", "invalid JSON at byte 1: unterminated string");
    expect_error(L, "[\"abc]", "invalid JSON at byte 2: unterminated string");
    expect_error(L, "\"\\", "invalid JSON at byte 1: unterminated string");
    expect_error(L, "\"ab\\\"", "invalid JSON at byte 1: unterminated string");
    expect_error(L, "\"ab\\n", "invalid JSON at byte 1: unterminated string");
    expect_error(L, "\"a\x01" "b\"", "invalid JSON at byte 3: control character in string");
    expect_error(L, "\"\t\"", "invalid JSON at byte 2: control character in string");
    expect_error(L, "\"a\nb\"", "invalid JSON at byte 3: control character in string");
    expect_error(L, "\"\\n\x1f\"", "invalid JSON at byte 4: control character in string");
    expect_error_n(L, "\"a\0b\"", 5, "invalid JSON at byte 3: control character in string");
    expect_error(L, "\"a\\x\"", "invalid JSON at byte 3: invalid escape");
    expect_error(L, "\"\\'\"", "invalid JSON at byte 2: invalid escape");
    expect_error(L, "\"\\U0041\"", "invalid JSON at byte 2: invalid escape");
    expect_error(L, "\"\\\x01\"", "invalid JSON at byte 2: invalid escape");
    expect_error(L, "\"\\u12\"", "invalid JSON at byte 2: invalid \\u escape");
    expect_error(L, "\"\\u12G4\"", "invalid JSON at byte 2: invalid \\u escape");
    expect_error(L, "\"\\u-123\"", "invalid JSON at byte 2: invalid \\u escape");
    expect_error(L, "\"\\ud800\"", "invalid JSON at byte 2: lone surrogate in \\u escape");
    expect_error(L, "\"\\udc00\"", "invalid JSON at byte 2: lone surrogate in \\u escape");
    expect_error(L, "\"ab\\ud83d\"", "invalid JSON at byte 4: lone surrogate in \\u escape");
    expect_error(L, "\"\\ud800\\u0041\"", "invalid JSON at byte 2: lone surrogate in \\u escape");
    expect_error(L, "\"\\ud800\\ud800\"", "invalid JSON at byte 2: lone surrogate in \\u escape");
    expect_error(L, "\"\\ud800\\n\"", "invalid JSON at byte 2: lone surrogate in \\u escape");
    expect_error(L, "\"\\ud800\\udc0\"", "invalid JSON at byte 2: lone surrogate in \\u escape");
    expect_error(L, "\"\\udfff\\ud800\"", "invalid JSON at byte 2: lone surrogate in \\u escape");

    close_state(L, &b);
}

/* n nested arrays around 1, or n nested objects {"a": ...} around 1. */
static char *nested(int n, int objects, size_t *len)
{
    char *s = malloc((size_t)n * 6 + 2);
    assert_non_null(s);
    size_t k = 0;
    for (int i = 0; i < n; i++) {
        memcpy(s + k, objects ? "{\"a\":" : "[", objects ? 5 : 1);
        k += objects ? 5 : 1;
    }
    s[k++] = '1';
    for (int i = 0; i < n; i++)
        s[k++] = objects ? '}' : ']';
    *len = k;
    return s;
}

static void test_depth(void **state)
{
    (void)state;
    lalloc a;
    tr_buf b = {0};
    lua_State *L = open_state(&a);
    size_t n;
    char want[128];

    for (int objects = 0; objects <= 1; objects++) {
        char *s = nested(TR_JSON_MAX_DEPTH, objects, &n);
        decode_ok(L, s, n);
        b.len = 0;
        assert_int_equal(tr_json_encode(L, -1, &b, NULL), 0);   /* the encoder's limit too */
        assert_int_equal(b.len, n);
        assert_memory_equal(b.data, s, n);
        lua_pop(L, 1);
        free(s);
        s = nested(TR_JSON_MAX_DEPTH + 1, objects, &n);
        snprintf(want, sizeof want, "invalid JSON at byte %d: nesting deeper than 128",
                 objects ? 5 * TR_JSON_MAX_DEPTH + 1 : TR_JSON_MAX_DEPTH + 1);
        expect_error_n(L, s, n, want);
        free(s);
    }
    /* deep and unclosed: the limit is met before the end */
    char deep[100000];
    memset(deep, '[', sizeof deep);
    expect_error_n(L, deep, sizeof deep, "invalid JSON at byte 129: nesting deeper than 128");

    push_expr(L, "(function() local t = {} for i = 2, 128 do t = {t} end return t end)()");
    b.len = 0;
    assert_int_equal(tr_json_encode(L, -1, &b, NULL), 0);
    lua_pop(L, 1);
    expect_encode_error(L, &b, "(function() local t = {} for i = 2, 129 do t = {t} end return t end)()",
                        "cannot encode tables nested deeper than 128");
    expect_encode_error(L, &b, "(function() local t = {} for i = 2, 129 do t = {x = t} end return t end)()",
                        "cannot encode tables nested deeper than 128");
    /* a cycle longer than the limit is reported as too deep */
    expect_encode_error(L, &b, "(function() local t = {} local c = t for i = 1, 200 do c.n = {} c = c.n end"
                               " c.n = t return t end)()",
                        "cannot encode tables nested deeper than 128");

    close_state(L, &b);
}

/* A document with a bit of everything, as text and as the Lua value it decodes to. */
static const char rich_text[] =
    "{\"id\": 12345, \"name\": \"troupe \\\"actor\\\" runtime\", \"ratio\": 0.25,"
    " \"big\": 9223372036854775807, \"neg\": -42, \"exp\": 6.02e23, \"ok\": true,"
    " \"no\": false, \"none\": null, \"tags\": [\"a\", \"b\\n\", \"\\u00e9\\ud83d\\ude00\"],"
    " \"empty_list\": [], \"empty_map\": {}, \"nested\": {\"list\": [[1, 2], [3, [4, [5]]]],"
    " \"map\": {\"k\": {\"k\": {\"k\": \"deep\"}}}}, \"mixed\": [1, \"two\", 3.5, null, {\"x\": []}],"
    " \"ctrl\": \"\\u0001\\u001f\\t\", \"slash\": \"a\\/b\"}";

static const char rich_expr[] =
    "json.object({id = 12345, name = 'troupe \"actor\" runtime', ratio = 0.25,"
    " big = math.maxinteger, neg = -42, exp = 6.02e23, ok = true, no = false, none = json.null,"
    " tags = json.array({'a', 'b\\n', '\\u{e9}\\u{1F600}'}), empty_list = json.array(),"
    " empty_map = json.object(), nested = json.object({list = json.array({json.array({1, 2}),"
    " json.array({3, json.array({4, json.array({5})})})}), map = json.object({k = json.object({"
    " k = json.object({k = 'deep'})})})}), mixed = json.array({1, 'two', 3.5, json.null,"
    " json.object({x = json.array()})}), ctrl = '\\1\\31\\t', slash = 'a/b'})";

static void test_round_trips(void **state)
{
    (void)state;
    lalloc a;
    tr_buf b = {0};
    lua_State *L = open_state(&a);

    expect_json(L, rich_text, rich_expr);
    /* decode(encode(v)) == v, for the decoded value and for the one built in Lua */
    decode_ok(L, rich_text, strlen(rich_text));
    push_expr(L, rich_expr);
    for (int i = -2; i <= -1; i++) {
        b.len = 0;
        assert_int_equal(tr_json_encode(L, i - 0, &b, NULL), 0);
        decode_ok(L, b.data, b.len);
        assert_true(deepeq(L, -1, i - 1));
        lua_pop(L, 1);
    }
    lua_pop(L, 2);
    /* texts already in the encoder's form come back byte for byte */
    static const char *canonical[] = {
        "[]", "{}", "[[]]", "[{}]", "{\"a\":[]}", "{\"a\":{}}", "[1,2,3]", "\"\\u0001\"",
        "[null,true,false,0,-1,0.5,-0,1e+300,\"\\\"\\\\\\n\"]", "{\"k\":{\"k\":[{\"k\":null}]}}",
    };
    for (size_t i = 0; i < sizeof canonical / sizeof *canonical; i++) {
        decode_ok(L, canonical[i], strlen(canonical[i]));
        b.len = 0;
        assert_int_equal(tr_json_encode(L, -1, &b, NULL), 0);
        if (b.len != strlen(canonical[i]) || memcmp(b.data, canonical[i], b.len) != 0)
            fail_msg("'%s' came back as '%.*s'", canonical[i], (int)b.len, b.data);
        lua_pop(L, 1);
    }
    /* encodings append: two values in one buffer */
    b.len = 0;
    lua_pushinteger(L, 5);
    lua_pushliteral(L, "hi");
    assert_int_equal(tr_json_encode(L, -2, &b, NULL), 0);
    assert_int_equal(tr_json_encode(L, -1, &b, NULL), 0);
    assert_int_equal(b.len, 5);
    assert_memory_equal(b.data, "5\"hi\"", 5);
    lua_pop(L, 2);
    /* the decoder reads exactly n bytes: no terminator needed, nothing read past */
    char *exact = malloc(4);
    assert_non_null(exact);
    memcpy(exact, "1234", 4);
    expect_int(L, "1234", 1234);
    decode_ok(L, exact, 3);
    assert_int_equal(lua_tointeger(L, -1), 123);
    lua_pop(L, 1);
    memcpy(exact, "1.5e", 4);
    expect_error_n(L, exact, 4, "invalid JSON at byte 5: invalid number");
    decode_ok(L, exact, 3);
    assert_true(lua_tonumber(L, -1) == 1.5);
    lua_pop(L, 1);
    free(exact);

    close_state(L, &b);
}

static void test_truncated_prefixes(void **state)
{
    (void)state;
    lalloc a;
    tr_buf b = {0};
    lua_State *L = open_state(&a);
    const char *err;
    size_t n = strlen(rich_text);

    for (size_t len = 0; len < n; len++) {
        int top = lua_gettop(L);
        int rc = tr_json_decode_protected(L, rich_text, len, &err);
        assert_int_equal(rc, TR_EINVAL);
        assert_int_equal(lua_gettop(L), top);
        assert_true(strncmp(err, "invalid JSON at byte ", 21) == 0);
    }
    decode_ok(L, rich_text, n);
    lua_pop(L, 1);

    close_state(L, &b);
}

/* Decodes bytes that may or may not be JSON. Whatever decodes must encode and decode
 * again to an equal value; whatever fails must leave the stack as it was. */
static void decode_anything(lua_State *L, tr_buf *b, const char *data, size_t len, int *ok)
{
    const char *err;
    int top = lua_gettop(L);
    int rc = tr_json_decode_protected(L, data, len, &err);
    if (rc != 0) {
        assert_int_equal(rc, TR_EINVAL);
        assert_int_equal(lua_gettop(L), top);
        assert_true(strncmp(err, "invalid JSON at byte ", 21) == 0);
        return;
    }
    (*ok)++;
    b->len = 0;
    if (tr_json_encode(L, -1, b, &err) != 0)
        fail_msg("'%.*s' decodes but does not encode: %s", (int)len, data, err);
    decode_ok(L, b->data, b->len);
    if (!deepeq(L, -1, -2))
        fail_msg("'%.*s' does not survive '%.*s'", (int)len, data, (int)b->len, b->data);
    lua_pop(L, 2);
}

static void test_random_input(void **state)
{
    (void)state;
    lalloc a;
    tr_buf b = {0};
    lua_State *L = open_state(&a);
    uint64_t seed = 0x74726f757065ull;
    static const char vocab[] = "[]{}\",:0123456789-+.eE \\u\"tfn[]{}\"\"aA\x01\xc3\xa9";
    char data[64];
    int ok = 0;

    for (int iter = 0; iter < 20000; iter++) {
        size_t len = rng_next(&seed) % sizeof data;
        for (size_t i = 0; i < len; i++) {
            uint64_t r = rng_next(&seed);
            data[i] = (r & 3) ? vocab[(r >> 8) % (sizeof vocab - 1)] : (char)(r >> 16);
        }
        decode_anything(L, &b, data, len, &ok);
    }
    /* the rich document with one to three bytes changed */
    size_t n = strlen(rich_text);
    char *copy = malloc(n);
    assert_non_null(copy);
    int ok_before = ok;
    for (int iter = 0; iter < 5000; iter++) {
        memcpy(copy, rich_text, n);
        int flips = 1 + (int)(rng_next(&seed) % 3);
        for (int i = 0; i < flips; i++) {
            uint64_t r = rng_next(&seed);
            copy[r % n] = (r >> 32) & 1 ? vocab[(r >> 40) % (sizeof vocab - 1)] : (char)(r >> 48);
        }
        decode_anything(L, &b, copy, n, &ok);
    }
    free(copy);
    assert_true(ok > 100);
    assert_true(ok - ok_before > 100);

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

    /* the rich document, and one with long escaped strings and a long number (the
     * scratch userdata) and big arrays and objects */
    run(L, "local parts = {} for i = 1, 300 do parts[i] = '\"k' .. i .. '\":[' .. i .. ',\"v\\\\n\"]' end"
           " big = '{' .. table.concat(parts, ',') .. ', \"s\": \"' .. string.rep('\\\\u00e9', 200)"
           " .. '\", \"n\": 1.' .. string.rep('5', 300) .. '}'");
    lua_getglobal(L, "big");
    const char *texts[2] = { rich_text, lua_tostring(L, -1) };
    for (int t = 0; t < 2; t++) {
        push_expr(L, t == 0 ? rich_expr : "nil");
        int top = lua_gettop(L);
        long n;
        for (n = 0;; n++) {
            a.fail_after = n;
            int rc = tr_json_decode_protected(L, texts[t], strlen(texts[t]), &err);
            a.fail_after = -1;
            if (rc == 0) {
                assert_int_equal(lua_gettop(L), top + 1);
                if (t == 0)
                    assert_true(deepeq(L, -1, -2));
                lua_pop(L, 1);
                break;
            }
            assert_int_equal(rc, TR_ENOMEM);
            assert_string_equal(err, "out of memory");
            assert_int_equal(lua_gettop(L), top);
            /* the state is still usable */
            run(L, "local t = {} for i = 1, 100 do t[i] = tostring(i) end assert(#t == 100)");
        }
        assert_true(n > 20);  /* failures were met at many points */
        lua_pop(L, 1);
    }
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
    push_expr(L, "(function() local t = {} for i = 1, 5000 do t[i] = 'z\\n' .. i end return t end)()");
    lua_setfield(L, -2, "long");
    int top = lua_gettop(L);
    long n;
    for (n = 0;; n++) {
        put_prefix(L, &b);
        tr_alloc_fail_after(n);
        int rc = tr_json_encode(L, -1, &b, &err);
        long pending = tr_alloc_fail_after(-1);
        if (rc == 0) {
            assert_true(pending >= 0);        /* no injected failure was reached */
            break;
        }
        assert_int_equal(rc, TR_ENOMEM);
        assert_string_equal(err, "out of memory");
        assert_int_equal(b.len, 5);
        assert_memory_equal(b.data, "\"xyz\"", 5);
        assert_int_equal(lua_gettop(L), top);
        tr_buf_free(&b);
    }
    assert_true(n > 5);   /* the buffer grew several times */
    lua_pop(L, 1);

    close_state(L, &b);
}

/* ---- the Lua module ----------------------------------------------------------------- */

static void test_module(void **state)
{
    (void)state;
    lalloc a;
    tr_buf b = {0};
    lua_State *L = open_state(&a);

    run(L,
        "assert(json.encode({message = 'Hello, World!'}) == '{\"message\":\"Hello, World!\"}')\n"
        "assert(json.encode(json.decode('[]')) == '[]')\n"
        "assert(json.encode(json.decode('{}')) == '{}')\n"
        "assert(json.encode(json.decode('{\"a\":[{}]}')) == '{\"a\":[{}]}')\n"
        "assert(json.encode(nil) == 'null' and json.encode(json.null) == 'null')\n"
        "assert(json.decode('null') == json.null and json.null == nil == false)\n"
        "assert(type(json.null) == 'userdata')\n"
        /* the marks: shared metatables with a name */
        "local t = {} assert(json.array(t) == t)\n"
        "assert(getmetatable(json.decode('[1]')) == getmetatable(t))\n"
        "assert(getmetatable(json.decode('{}')) == getmetatable(json.object()))\n"
        "assert(getmetatable(t) ~= getmetatable(json.object()))\n"
        "assert(tostring(t):match('^json.array: '))\n"
        "assert(tostring(json.object()):match('^json.object: '))\n"
        /* a decoded table can be changed and re-marked */
        "local d = json.decode('[]') d[1] = 'x' assert(json.encode(d) == '[\"x\"]')\n"
        "local o = json.decode('{\"a\":1}') o.a = nil assert(json.encode(o) == '{}')\n"
        "assert(json.encode(json.object(json.decode('[]'))) == '{}')\n"
        /* refusals raise, with the argument named */
        "local ok, err = pcall(json.encode, {f = print})\n"
        "assert(not ok and err:find('bad argument #1 to', 1, true), err)\n"
        "assert(err:find('(cannot encode a function)', 1, true), err)\n"
        "ok, err = pcall(json.encode, 0/0) assert(not ok and err:find('cannot encode NaN', 1, true))\n"
        "ok, err = pcall(json.encode) assert(not ok and err:find('value expected', 1, true))\n"
        "ok, err = pcall(json.decode, 5) assert(not ok and err:find('string expected, got number', 1, true))\n"
        "ok, err = pcall(json.decode) assert(not ok and err:find('string expected, got no value', 1, true))\n"
        "ok, err = pcall(json.array, 5) assert(not ok and err:find('table expected', 1, true))\n"
        "ok, err = pcall(json.array, setmetatable({}, {__metatable = 'locked'}))\n"
        "assert(not ok and err:find('protected metatable', 1, true))\n"
        /* invalid JSON returns nil and the reason */
        "local v, why = json.decode('{\"a\":1,}')\n"
        "assert(v == nil and why == 'invalid JSON at byte 8: trailing comma', why)\n"
        /* a big output (the kept buffer is dropped after it), then small ones */
        "local big = {} for i = 1, 20000 do big[i] = 'item ' .. i end\n"
        "local s = json.encode(big) assert(#s > 100000)\n"
        "local back = json.decode(s) assert(#back == 20000 and back[20000] == 'item 20000')\n"
        "assert(json.encode({1}) == '[1]')\n"
        /* the module loaded again shares null and the marks */
        "package.loaded['troupe.json'] = nil\n"
        "package.preload['troupe.json'] = ...\n");
    lua_settop(L, 0);
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L, luaopen_troupe_json);
    lua_setfield(L, -2, "troupe.json");
    lua_pop(L, 1);
    run(L,
        "local j2 = require 'troupe.json'\n"
        "assert(j2 ~= json and j2.null == json.null)\n"
        "assert(getmetatable(j2.decode('[]')) == getmetatable(json.array()))\n"
        "assert(j2.encode(json.decode('[]')) == '[]')\n");

    /* tr_json_pushnull is json.null */
    tr_json_pushnull(L);
    lua_getglobal(L, "json");
    lua_getfield(L, -1, "null");
    assert_true(lua_rawequal(L, -1, -3));
    lua_pop(L, 3);

    /* json.encode raises "not enough memory" when its buffer cannot grow (the Lua
     * side warmed up and the collector stopped first, so that the buffer's growth is
     * the next allocation) */
    lua_gc(L, LUA_GCSTOP);
    assert_true(lua_checkstack(L, 100));
    lua_getglobal(L, "json");
    lua_getfield(L, -1, "encode");
    lua_pushvalue(L, -1);
    lua_pushliteral(L, "warm");
    assert_int_equal(lua_pcall(L, 1, 1, 0), LUA_OK);
    lua_pop(L, 1);
    push_expr(L, "string.rep('x', 100000)");
    tr_alloc_fail_after(0);
    int rc = lua_pcall(L, 1, 1, 0);
    tr_alloc_fail_after(-1);
    lua_gc(L, LUA_GCRESTART);
    /* (called from C there is no position to prefix, so Lua makes it LUA_ERRMEM) */
    assert_true(rc == LUA_ERRRUN || rc == LUA_ERRMEM);
    assert_non_null(strstr(lua_tostring(L, -1), "not enough memory"));
    lua_settop(L, 0);

    close_state(L, &b);
}

/* The marks are made by the decoder when the module was never loaded in the state. */
static void test_without_module(void **state)
{
    (void)state;
    tr_alloc_track(1);
    lalloc a = { -1 };
    lua_State *L = lua_newstate(test_alloc, &a);
    assert_non_null(L);
    tr_buf b = {0};
    decode_ok(L, "[[],{}]", 7);
    assert_int_equal(tr_json_encode(L, -1, &b, NULL), 0);
    assert_int_equal(b.len, 7);
    assert_memory_equal(b.data, "[[],{}]", 7);
    lua_pop(L, 1);
    lua_newtable(L);
    b.len = 0;
    assert_int_equal(tr_json_encode(L, -1, &b, NULL), 0);
    assert_memory_equal(b.data, "{}", 2);
    lua_pop(L, 1);
    tr_buf_free(&b);
    lua_close(L);
    assert_int_equal(tr_alloc_live(), 0);
    tr_alloc_track(0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode_scalars),
        cmocka_unit_test(test_encode_tables),
        cmocka_unit_test(test_encode_refusals),
        cmocka_unit_test(test_decode_values),
        cmocka_unit_test(test_decode_numbers),
        cmocka_unit_test(test_decode_strings),
        cmocka_unit_test(test_decode_errors),
        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_round_trips),
        cmocka_unit_test(test_truncated_prefixes),
        cmocka_unit_test(test_random_input),
        cmocka_unit_test(test_decode_out_of_memory),
        cmocka_unit_test(test_encode_out_of_memory),
        cmocka_unit_test(test_module),
        cmocka_unit_test(test_without_module),
    };
    return cmocka_run_group_tests_name("json", tests, NULL, NULL);
}
