/* json.h — JSON text <-> Lua values: the troupe.json module and its C API (bindings).
 *
 * Strict RFC 8259 both ways. Decoding: no comments, trailing commas, NaN, leading
 * zeros or control characters; \u escapes become UTF-8 (surrogate pairs joined, lone
 * surrogates refused); an integer literal that fits in 64 bits becomes a Lua integer,
 * any other number a float ("-0" is the float -0.0), a number beyond the double range
 * is refused; a repeated key keeps its last value; null is json.null (the light
 * userdata NULL, which no pid ever is, so it also survives the actor codec). Bytes of
 * 0x80 and above pass through unchecked both ways (strings are Lua byte strings).
 *
 * Tables: decoded arrays and objects carry a mark (a metatable shared by the state,
 * kept in the registry) so that [] and {} keep their kind through a round trip;
 * json.array(t) and json.object(t) set the same marks by hand. Encoding reads tables
 * raw (no metamethods): keys exactly 1..n make an array, string keys only an object,
 * an empty table is {} unless marked as an array; anything else (string keys with
 * integer keys, holes, other key types) is refused.
 */
#ifndef TR_BINDINGS_JSON_H
#define TR_BINDINGS_JSON_H

#include <stddef.h>
#include <lua.h>

#include "codec.h"   /* tr_buf */

/* Arrays and objects may nest this deep, in both directions (a table holding no
 * table has depth 1). */
#define TR_JSON_MAX_DEPTH 128

/* The troupe.json module: encode, decode, null, array, object. */
int luaopen_troupe_json(lua_State *L);

/*
 * Appends the JSON text of the value at idx to out (borrowed). Returns 0, or:
 *   TR_EINVAL with *err set to a static message: "cannot encode a function" (also
 *     "a userdata", "a light userdata" for any pointer but json.null, "a thread"),
 *     "cannot encode NaN", "cannot encode infinity", "cannot encode a table with a
 *     cycle", "cannot encode tables nested deeper than 128", "cannot encode a table
 *     with mixed or sparse keys", "cannot encode a table with a boolean key" (also
 *     float, table, function, userdata, light userdata, thread keys), "cannot encode
 *     a json.array with non-sequence keys", "cannot encode a json.object with a
 *     non-string key", "no value at that index";
 *   TR_ENOMEM ("out of memory") when out cannot grow (or the Lua stack).
 * On failure out->len is what it was on entry and the Lua stack is as it was.
 * nil encodes as null. A float always reads back as the same double: integral ones
 * below 2^63 print as integers (1.0 as 1, like JSON.stringify; -0.0 as -0), short
 * decimals with the fewest fraction digits (19.99, 0.00001), the rest in the
 * shortest of %.14g .. %.17g that reads back (0.1 + 0.2 as 0.30000000000000004).
 * Never raises and allocates nothing from Lua: it may run unprotected. err may be
 * NULL.
 */
int tr_json_encode(lua_State *L, int idx, tr_buf *out, const char **err);

/*
 * Decodes the JSON text s[0..n) (borrowed; need not be NUL-terminated) and pushes
 * the value. Returns 0 (one value pushed), or, with nothing pushed:
 *   TR_EINVAL, *err "invalid JSON at byte B: WHAT" (B counts from 1, n + 1 for the
 *     end of input), e.g. "invalid JSON at byte 17: expected ',' or '}'". The
 *     message lives in a thread-local buffer (static storage, not the Lua stack): it
 *     stays valid until the next tr_json_decode on the same thread, so copy it (or
 *     push it) before decoding again.
 *   TR_ENOMEM, *err "out of memory", when the Lua stack cannot grow.
 * It creates tables and strings, which raise a Lua memory error (a longjmp) when the
 * Lua allocator fails: call it only where that is caught (inside a lua_CFunction, or
 * a coroutine run under lua_pcall/lua_resume), or use tr_json_decode_protected. It
 * holds no C resource while it can raise, so being unwound leaks nothing. Nothing
 * else raises. err may be NULL.
 */
int tr_json_decode(lua_State *L, const char *s, size_t n, const char **err);

/* tr_json_decode under lua_pcall, for plain C: a Lua memory error becomes TR_ENOMEM
 * ("out of memory") with nothing pushed, and L stays usable. */
int tr_json_decode_protected(lua_State *L, const char *s, size_t n, const char **err);

/* Pushes json.null (the light userdata NULL). */
void tr_json_pushnull(lua_State *L);

#endif
