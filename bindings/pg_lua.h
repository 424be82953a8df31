/* pg_lua.h — the troupe.pg module (bindings/pg.c) and its value conversions
 * (bindings/pg_value.c): Postgres values <-> Lua values.
 *
 * Results arrive in text format and become: int2/int4/int8/oid -> integer;
 * float4/float8 -> number (NaN, inf); numeric, money -> string (exact); bool ->
 * boolean; text, varchar, bpchar, name, uuid, date, time, interval, ... -> string;
 * json/jsonb -> the decoded value (troupe.json); bytea -> the raw bytes; timestamp
 * and timestamptz -> ISO 8601 ("2024-01-02T03:04:05.5" / "...+00:00"); arrays of
 * these -> tables (nested for several dimensions, an empty one marked as a JSON
 * array); SQL NULL -> pg.null, which is json.null (the light userdata NULL), so a
 * NULL column is present and distinct from a missing one (nil).
 */
#ifndef TR_BINDINGS_PG_LUA_H
#define TR_BINDINGS_PG_LUA_H

#include <lua.h>

#include "codec.h"
#include "pg.h"

/* The troupe.pg module (package.preload["troupe.pg"]). */
int luaopen_troupe_pg(lua_State *L);

/* Pushes the rows of r: an array of tables keyed by column name, whose metatable
 * answers rows.affected (the command's row count, 0 when it has none) and
 * rows.command ("SELECT", "INSERT", ...). one: pushes only the first row, or nil.
 * Returns 1. Raises only on memory errors. */
int tr_pg_push_rows(lua_State *L, const PGresult *r, int one);

/* Pushes err as a table { code, message, severity, detail?, hint?, position?, where?,
 * schema?, table?, column?, datatype?, constraint?, unavailable? } whose tostring is
 * "SEVERITY CODE: message". err NULL: the out-of-memory error. */
void tr_pg_push_error(lua_State *L, const tr_pg_error *err);

/*
 * Encodes the Lua value at idx as parameter p, appending any text it needs to b (p's
 * pointers are offsets into b until tr_pg_params_fix): nil and pg.null -> NULL;
 * booleans and numbers -> text; strings -> bytes, as they are; tables -> both an
 * array literal (if a sequence of such values) and JSON (if troupe.json can encode
 * it). Never raises. 0, TR_ENOMEM, or TR_EINVAL with *why set (a type no parameter
 * can be, a table neither form can carry).
 */
int tr_pg_param_encode(lua_State *L, int idx, tr_pg_param *p, tr_buf *b, const char **why);

/* Turns the offsets left by tr_pg_param_encode into pointers into b. */
void tr_pg_params_fix(tr_pg_param *p, int n, const tr_buf *b);

#endif
