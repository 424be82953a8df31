/* json_int.h — what json.c, json_encode.c and json_decode.c share (bindings). */
#ifndef TR_BINDINGS_JSON_INT_H
#define TR_BINDINGS_JSON_INT_H

#include <stdint.h>

#include "json.h"

#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

_Static_assert(sizeof(lua_Integer) == 8, "JSON integers are 64-bit");

#define TR__JSON_NOMEM "out of memory"

/* A table's kind: no mark, or the array or object mark (a metatable shared by the
 * state, kept in the registry under the address of tr__json_array_key or
 * tr__json_object_key). */
enum { TR__JSON_PLAIN, TR__JSON_ARRAY, TR__JSON_OBJECT };
extern const char tr__json_array_key, tr__json_object_key;

/* Pushes the mark of kind (ARRAY or OBJECT), creating it on first use. */
void tr__json_push_mark(lua_State *L, int kind);

/* For each byte: 0 when a string carries it as is, else the letter after the
 * backslash of its escape ('u' for \u00XX). */
extern const char tr__json_escape[256];

/* 10^0 .. 10^22: the powers of ten a double holds exactly. */
extern const double tr__json_pow10[23];

/* Non-zero when one of the 8 bytes of x is below 0x20, '"' or '\\' (exact: a borrow
 * only ever starts at a byte that matches). */
static inline uint64_t tr__json_has_special(uint64_t x)
{
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    uint64_t q = x ^ (ones * '"'), s = x ^ (ones * '\\');
    return (((x - ones * 0x20) & ~x) | ((q - ones) & ~q) | ((s - ones) & ~s)) & highs;
}

#endif
