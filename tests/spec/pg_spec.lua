-- troupe.pg against the real Postgres of tests/services.sh (TROUPE_PG_URL): type
-- mappings, NULL, rows.affected, errors, prepared statements, injection attempts,
-- transactions and savepoints, pipelining under 1,000 concurrent queries, pool
-- exhaustion, statement timeouts, the slow log, lost connections. Pending without
-- TROUPE_PG_URL.
package.path = debug.getinfo(1, "S").source:match("^@(.-)[^/]*$") .. "?.lua;" .. package.path
local actor = require "troupe.actor"
local json = require "troupe.json"
local h = require "helpers"

if not os.getenv("TROUPE_PG_URL") then
  describe("troupe.pg", function()
    pending("TROUPE_PG_URL is not set (make test starts a Postgres)")
  end)
  return
end

local pg = require "troupe.pg"
local T = "pg_spec_" .. os.time() .. "_" .. math.random(1000000)

local function q(sql, ...)
  local rows, err = pg.query(sql, ...)
  assert(rows, "query failed: " .. tostring(err) .. " in " .. sql)
  return rows
end

local function one(sql, ...)
  return q(sql, ...)[1]
end

-- Runs fn with the pool reconfigured by changes, then puts the settings back.
local function with_config(changes, fn)
  local saved = pg.config()
  local cfg = {}
  for k, v in pairs(saved) do cfg[k] = v end
  for k, v in pairs(changes) do cfg[k] = v end
  pg.configure(cfg)
  local ok, err = pcall(fn)
  pg.configure(saved)
  if not ok then error(err, 0) end
end

describe("troupe.pg", function()
  setup(function()
    q("CREATE TABLE " .. T .. " (id serial PRIMARY KEY, name text UNIQUE, n int)")
  end)

  teardown(function()
    pg.query("DROP TABLE IF EXISTS " .. T)
  end)

  describe("types", function()
    it("maps integers, floats, numeric, booleans and text", function()
      local r = one([[SELECT 1::int2 AS a, 2::int4 AS b, 9007199254740993::int8 AS c,
                             1.5::float4 AS d, 0.1::float8 AS e, 'NaN'::float8 AS nan,
                             'Infinity'::float8 AS inf, 12345678901234567890.123::numeric AS f,
                             true AS t, false AS ff, 'héllo'::text AS g, 'v'::varchar(3) AS h,
                             'x'::char(3) AS i, 42::oid AS o, 'b5c6b7a2-8b0c-4d2b-9c33-1d2e3f4a5b6c'::uuid AS u,
                             '2024-02-29'::date AS dt]])
      assert.equal(1, r.a); assert.equal("integer", math.type(r.a))
      assert.equal(2, r.b); assert.equal("integer", math.type(r.b))
      assert.equal(9007199254740993, r.c); assert.equal("integer", math.type(r.c))
      assert.equal(1.5, r.d); assert.equal("float", math.type(r.d))
      assert.equal(0.1, r.e)
      assert.is_true(r.nan ~= r.nan)
      assert.equal(math.huge, r.inf)
      assert.equal("12345678901234567890.123", r.f)
      assert.is_true(r.t); assert.is_false(r.ff)
      assert.equal("héllo", r.g); assert.equal("v", r.h); assert.equal("x  ", r.i)
      assert.equal(42, r.o)
      assert.equal("b5c6b7a2-8b0c-4d2b-9c33-1d2e3f4a5b6c", r.u)
      assert.equal("2024-02-29", r.dt)
    end)

    it("decodes json and jsonb into tables", function()
      local r = one([[SELECT '{"a":[1,2,{"b":null}],"s":"x"}'::json AS j,
                             '[true, 1.5, "y"]'::jsonb AS jb, '"str"'::jsonb AS js, '[]'::jsonb AS e]])
      assert.same({ 1, 2, { b = json.null } }, r.j.a)
      assert.equal("x", r.j.s)
      assert.same({ true, 1.5, "y" }, r.jb)
      assert.equal("str", r.js)
      assert.equal("[]", json.encode(r.e))
    end)

    it("returns bytea as the raw bytes, zero bytes included, both ways", function()
      local bytes = "\0\1\2\255A\0\\x'\""
      local r = one("SELECT $1::bytea AS b, length($1::bytea) AS n, '\\x00ff00'::bytea AS lit", bytes)
      assert.equal(bytes, r.b)
      assert.equal(#bytes, r.n)
      assert.equal("\0\255\0", r.lit)
      local all = {}
      for i = 0, 255 do all[#all + 1] = string.char(i) end
      all = table.concat(all)
      assert.equal(all, one("SELECT $1::bytea AS b", all).b)
    end)

    it("gives timestamps as ISO 8601 strings", function()
      local r = one([[SELECT '2024-01-02 03:04:05.123456'::timestamp AS ts,
                             '2024-01-02 03:04:05'::timestamp AS ts0,
                             'infinity'::timestamp AS inf]])
      assert.equal("2024-01-02T03:04:05.123456", r.ts)
      assert.equal("2024-01-02T03:04:05", r.ts0)
      assert.equal("infinity", r.inf)
      local tz
      assert(pg.transaction(function(tx)
        tx:query("SET LOCAL TimeZone = 'UTC'")
        tz = tx:query_one([[SELECT '2024-01-02 03:04:05.5+00'::timestamptz AS a,
                                   '2024-01-02 03:04:05+05:30'::timestamptz AS b]])
        tx:query("SET LOCAL TimeZone = 'Asia/Kolkata'")
        tz.c = tx:query_one("SELECT '2024-01-02 03:04:05+00'::timestamptz AS c").c
      end))
      assert.equal("2024-01-02T03:04:05.5+00:00", tz.a)
      assert.equal("2024-01-01T21:34:05+00:00", tz.b)
      assert.equal("2024-01-02T08:34:05+05:30", tz.c)
      assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d", one("SELECT now() AS n").n)
    end)

    it("maps arrays to tables, nested, with NULLs and quoting", function()
      local r = one([[SELECT '{1,2,NULL,4}'::int[] AS i, '{{1,2},{3,4}}'::int8[] AS m,
                             ARRAY['a', 'b,c', 'd"e', 'f\g', 'NULL', NULL, ''] AS t,
                             '{t,f}'::bool[] AS b, '{1.5,NaN}'::float8[] AS f,
                             ARRAY['{"x":1}'::jsonb] AS j, '{}'::int[] AS e,
                             ARRAY['\x00ff'::bytea] AS by, '{1.10,2}'::numeric[] AS n,
                             ARRAY['2024-01-02 03:04:05'::timestamp] AS ts]])
      assert.same({ 1, 2, pg.null, 4 }, r.i)
      assert.same({ { 1, 2 }, { 3, 4 } }, r.m)
      assert.same({ "a", "b,c", 'd"e', "f\\g", "NULL", pg.null, "" }, r.t)
      assert.same({ true, false }, r.b)
      assert.equal(1.5, r.f[1]); assert.is_true(r.f[2] ~= r.f[2])
      assert.same({ { x = 1 } }, r.j)
      assert.equal("[]", json.encode(r.e))
      assert.same({ "\0\255" }, r.by)
      assert.same({ "1.10", "2" }, r.n)
      assert.same({ "2024-01-02T03:04:05" }, r.ts)
    end)

    it("sends Lua values as parameters: numbers, booleans, strings, tables, NULL", function()
      local r = one([[SELECT $1::int AS i, $2::float8 AS f, $3::bool AS b, $4::text AS s,
                             $5::int[] AS a, $6::jsonb AS j, $7::int IS NULL AS n,
                             $8::text[] AS ts, $9::jsonb AS ja, $10::numeric AS big]],
                     7, 2.25, true, "x", { 1, 2, 3 }, { k = { 1, "two" } }, pg.null,
                     { "a b", 'q"', "c,d" }, { 1, 2 }, 12345678901234)
      assert.equal(7, r.i); assert.equal(2.25, r.f); assert.is_true(r.b); assert.equal("x", r.s)
      assert.same({ 1, 2, 3 }, r.a)
      assert.same({ k = { 1, "two" } }, r.j)
      assert.is_true(r.n)
      assert.same({ "a b", 'q"', "c,d" }, r.ts)
      assert.same({ 1, 2 }, r.ja)
      assert.equal("12345678901234", r.big)
      assert.is_true(one("SELECT $1::int IS NULL AS n", nil).n)
      assert.equal(3, one("SELECT $1::int IS NULL AS a, $2::int AS x", nil, 3).x)
    end)

    it("gives NULL as pg.null, distinct from a missing column", function()
      local r = one("SELECT NULL::text AS a, NULL::int AS b, NULL::jsonb AS c, 1 AS d")
      assert.equal(pg.null, r.a); assert.equal(pg.null, r.b); assert.equal(pg.null, r.c)
      assert.is_nil(r.missing)
      assert.equal(json.null, pg.null)
      assert.equal('{"a":null}', json.encode(one("SELECT NULL::int AS a")))
    end)
  end)

  describe("queries", function()
    it("reports rows.affected for INSERT, UPDATE, DELETE and SELECT", function()
      local ins = q("INSERT INTO " .. T .. " (name, n) VALUES ($1, 1), ($2, 2), ($3, 3)", "a", "b", "c")
      assert.equal(3, ins.affected); assert.equal("INSERT", ins.command); assert.equal(0, #ins)
      local upd = q("UPDATE " .. T .. " SET n = n * 10 WHERE n >= $1", 2)
      assert.equal(2, upd.affected); assert.equal("UPDATE", upd.command)
      local sel = q("SELECT name, n FROM " .. T .. " ORDER BY n")
      assert.equal(3, #sel); assert.equal(3, sel.affected)
      assert.same({ name = "a", n = 1 }, sel[1])
      assert.same({ { name = "a", n = 1 }, { name = "b", n = 20 }, { name = "c", n = 30 } },
                  json.decode(json.encode(sel)))   -- rows encode as a JSON array
      local del = q("DELETE FROM " .. T .. " WHERE name = ANY($1)", { "a", "c" })
      assert.equal(2, del.affected); assert.equal("DELETE", del.command)
      local ret = q("INSERT INTO " .. T .. " (name) VALUES ($1) RETURNING id, name", "d")
      assert.equal(1, ret.affected); assert.equal("d", ret[1].name)
      q("DELETE FROM " .. T)
    end)

    it("query_one returns the first row, or nil when there is none", function()
      assert.same({ x = 1 }, pg.query_one("SELECT 1 AS x UNION ALL SELECT 2"))
      local row, err = pg.query_one("SELECT 1 AS x WHERE false")
      assert.is_nil(row); assert.is_nil(err)
    end)

    it("returns nil and an error with the SQLSTATE on failure", function()
      local rows, err = pg.query("SELEC 1")
      assert.is_nil(rows)
      assert.equal("42601", err.code)
      assert.equal("ERROR", err.severity)
      assert.matches("syntax error", err.message)
      assert.equal("ERROR 42601: " .. err.message, tostring(err))
      assert.equal("x: ERROR 42601: " .. err.message, "x: " .. err)
      q("INSERT INTO " .. T .. " (name) VALUES ('dup')")
      rows, err = pg.query("INSERT INTO " .. T .. " (name) VALUES ($1)", "dup")
      assert.is_nil(rows)
      assert.equal("23505", err.code)
      assert.equal(T .. "_name_key", err.constraint)
      assert.equal(T, err.table)
      assert.matches("already exists", err.detail)
      assert.is_nil(err.unavailable)
      local _, e2 = pg.query("SELECT 1/0")
      assert.equal("22012", e2.code)
      local _, e3 = pg.query("SELECT $1::int", "abc")
      assert.equal("22P02", e3.code)
      q("DELETE FROM " .. T)
    end)

    it("keeps a failed query from affecting the others in flight", function()
      local c = h.spawn("pg_client", nil, { worker = 0 })
      local res = actor.call(c, { op = "eval", code = [[
        local out, n = {}, 0
        for i = 1, 20 do
          actor.send(actor.self(), { op = "eval", code = "state.r = state.r or {}; " ..
            "local rows, err = pg.query(" .. (i % 2 == 0 and "'SELECT 1/0'" or "'SELECT $1::int AS x', " .. i) ..
            "); state.r[" .. i .. "] = rows and rows[1].x or err.code" })
        end
        for _ = 1, 200 do
          local n = 0
          for _ in pairs(state.r or {}) do n = n + 1 end
          if n == 20 then break end
          actor.sleep(0.01)
        end
        return state.r ]] }, 10)
      for i = 1, 20 do
        if i % 2 == 0 then assert.equal("22012", res[i]) else assert.equal(i, res[i]) end
      end
      actor.kill(c, "kill")
    end)

    it("keeps injection attempts as data", function()
      local evil = { "'; DROP TABLE " .. T .. "; --", "\" OR 1=1 --", "$1", "a\\'b",
                     "1); DELETE FROM " .. T .. "; --", "' OR '1'='1" }
      for _, s in ipairs(evil) do
        q("INSERT INTO " .. T .. " (name) VALUES ($1)", s)
      end
      local rows = q("SELECT name FROM " .. T .. " WHERE name = $1 OR name = $2", evil[1], evil[6])
      assert.equal(2, #rows)
      assert.equal(#evil, #q("SELECT * FROM " .. T))
      assert.equal(0, #q("SELECT * FROM " .. T .. " WHERE name = $1", "x' OR '1'='1"))
      assert.equal(evil[3], one("SELECT $1::text AS s", evil[3]).s)
      q("DELETE FROM " .. T)
    end)

    it("prepares a statement once per connection and reuses it", function()
      local sql = "SELECT $1::int * 2 AS x /* " .. T .. " reuse */"
      local before = pg.stats().prepared
      for i = 1, 50 do assert.equal(2 * i, one(sql, i).x) end
      local st = pg.stats()
      assert.is_true(st.prepared - before <= st.connections,
        ("prepared %d times for %d connections"):format(st.prepared - before, st.connections))
      local count
      assert(pg.transaction(function(tx)
        for i = 1, 3 do tx:query(sql, i) end
        count = tx:query_one("SELECT count(*) AS n FROM pg_prepared_statements WHERE statement = $1", sql).n
      end))
      assert.equal(1, count)
    end)

    it("raises on misuse: no SQL, a function as a parameter, transaction control outside a transaction", function()
      assert.has_error(function() pg.query() end)
      assert.has_error(function() pg.query(42) end)
      assert.has_error(function() pg.query("SELECT $1", print) end)
      assert.has_error(function() pg.query("BEGIN") end)
      assert.has_error(function() pg.query("  /* c */ commit") end)
      assert.has_error(function() pg.query({ text = "SELECT 1", timeout = -1 }) end)
      assert.has_error(function() pg.configure({ nope = 1 }) end)
      assert.has_error(function() pg.configure({ max = 0 }) end)
    end)
  end)

  describe("transactions", function()
    it("commits when the function returns, and returns its results", function()
      local a, b = pg.transaction(function(tx, x)
        tx:query("INSERT INTO " .. T .. " (name, n) VALUES ('t1', $1)", x)
        pg.query("INSERT INTO " .. T .. " (name, n) VALUES ('t2', $1)", x + 1)   -- same transaction
        return "done", x
      end, 5)
      assert.equal("done", a); assert.equal(5, b)
      assert.equal(2, #q("SELECT * FROM " .. T .. " WHERE name IN ('t1', 't2')"))
      assert.is_true(pg.transaction(function() end))
      q("DELETE FROM " .. T)
    end)

    it("rolls back when the function raises, re-raises, and leaves the connection clean", function()
      local ok, err = pcall(pg.transaction, function(tx)
        tx:query("INSERT INTO " .. T .. " (name) VALUES ('gone')")
        error("boom", 0)
      end)
      assert.is_false(ok); assert.equal("boom", err)
      assert.equal(0, #q("SELECT * FROM " .. T .. " WHERE name = 'gone'"))
      local st = pg.stats()
      assert.equal(0, st.pinned)
      -- every pooled connection is outside any transaction
      for _ = 1, 10 do assert.is_true(one("SELECT txid_current_if_assigned() IS NULL AS idle").idle) end
    end)

    it("rolls back after a failed query and returns its error", function()
      local res, err = pg.transaction(function(tx)
        tx:query("INSERT INTO " .. T .. " (name) VALUES ('x1')")
        local r, e = tx:query("INSERT INTO " .. T .. " (name) VALUES ('x1')")
        assert.is_nil(r); assert.equal("23505", e.code)
        local r2, e2 = tx:query("SELECT 1")
        assert.is_nil(r2); assert.equal("25P02", e2.code)
      end)
      assert.is_nil(res)
      assert.equal("23505", err.code)
      assert.equal(0, #q("SELECT * FROM " .. T .. " WHERE name = 'x1'"))
      assert.equal(0, pg.stats().pinned)
    end)

    it("nests with savepoints: an inner failure rolls back only the inner part", function()
      assert.equal("outer", pg.transaction(function(tx)
        tx:query("INSERT INTO " .. T .. " (name) VALUES ('o1')")
        local ok = pcall(tx.transaction, tx, function(inner)
          inner:query("INSERT INTO " .. T .. " (name) VALUES ('i1')")
          error("inner fails")
        end)
        assert.is_false(ok)
        local r, e = pg.transaction(function(inner)        -- nests too (same coroutine)
          inner:query("INSERT INTO " .. T .. " (name) VALUES ('o1')")   -- duplicate
        end)
        assert.is_nil(r); assert.equal("23505", e.code)
        assert.equal(42, tx:transaction(function(inner)
          inner:query("INSERT INTO " .. T .. " (name) VALUES ('i2')")
          return 42
        end))
        return "outer"
      end))
      local names = {}
      for _, r in ipairs(q("SELECT name FROM " .. T .. " ORDER BY name")) do names[#names + 1] = r.name end
      assert.same({ "i2", "o1" }, names)
      q("DELETE FROM " .. T)
    end)

    it("honours isolation options and refuses unknown ones", function()
      local level = pg.transaction({ isolation = "serializable", read_only = true }, function(tx)
        return tx:query_one("SHOW transaction_isolation").transaction_isolation
      end)
      assert.equal("serializable", level)
      assert.has_error(function() pg.transaction({ isolation = "bogus; DROP" }, function() end) end)
    end)
  end)

  describe("pipelining", function()
    it("matches 1,000 concurrent queries from 4 actors to their own results", function()
      local before = pg.stats()
      local clients = {}
      for i = 1, 4 do clients[i] = h.spawn("pg_client") end
      for i = 1, 1000 do
        actor.send(clients[(i % 4) + 1], { op = "query", i = i })
      end
      local total, bad, errors = 0, 0, {}
      assert.truthy(h.wait_until(function()
        total, bad = 0, 0
        for _, c in ipairs(clients) do
          local r = actor.call(c, { op = "count" })
          total, bad = total + r.ok + r.bad, bad + r.bad
          for _, e in ipairs(r.errors) do errors[#errors + 1] = e end
        end
        return total == 1000
      end, 20), "only " .. total .. " answered")
      assert.equal(0, bad, table.concat(errors, "; "))
      local st = pg.stats()
      assert.is_true(st.max_inflight > 1, "no query shared a connection in flight")
      assert.equal(before.errors, st.errors)
      for _, c in ipairs(clients) do actor.kill(c, "kill") end
    end)
  end)

  describe("batch", function()
    it("sends every query at once and returns each one's rows in order", function()
      local list = {}
      for i = 1, 50 do
        list[i] = i % 2 == 0 and { "SELECT $1::int * 2 AS v, pg_backend_pid() AS pid", i }
                  or { text = "SELECT $1::int * 2 AS v, pg_backend_pid() AS pid", values = { i } }
      end
      list[51] = "SELECT 'plain' AS v"
      local before = pg.stats()
      local all = assert(pg.batch(list))
      assert.equal(51, #all)
      for i = 1, 50 do
        assert.equal(1, #all[i])
        assert.equal(i * 2, all[i][1].v)
      end
      assert.equal("plain", all[51][1].v)
      assert.equal("SELECT", all[51].command)
      assert.is_true(pg.stats().max_inflight > 1, "the batch never had two queries in flight")
      assert.equal(before.errors, pg.stats().errors)
    end)

    it("returns an empty table for an empty batch", function()
      local all = pg.batch({})
      assert.same({}, all)
    end)

    it("fails with the first failing query's error and its index; the others still run", function()
      local tag = "batch_" .. math.random(1000000)
      local all, err = pg.batch{
        { "INSERT INTO " .. T .. " (name, n) VALUES ($1, 1)", tag .. "a" },
        { "SELECT 1/0 AS x" },
        { "SELECT * FROM no_such_table_" .. tag },
        { "INSERT INTO " .. T .. " (name, n) VALUES ($1, 2)", tag .. "b" },
      }
      assert.is_nil(all)
      assert.equal("22012", err.code)
      assert.equal(2, err.index)
      -- one failure does not poison the queries around it
      local rows = q("SELECT name FROM " .. T .. " WHERE name LIKE $1 ORDER BY name", tag .. "%")
      assert.equal(2, #rows)
    end)

    it("keeps parameters as data", function()
      local evil = "'); DROP TABLE " .. T .. "; --"
      local all = assert(pg.batch{ { "SELECT $1::text AS s", evil }, table.pack("SELECT $1::text AS s", nil) })
      assert.equal(evil, all[1][1].s)
      assert.equal(pg.null, all[2][1].s)
      assert.truthy(q("SELECT count(*) AS c FROM " .. T)[1])
    end)

    it("runs on the transaction's connection inside pg.transaction (rolled back with it)", function()
      local tag = "batch_tx_" .. math.random(1000000)
      local ok, err = pcall(pg.transaction, function(tx)
        local all = assert(pg.batch{
          { "INSERT INTO " .. T .. " (name, n) VALUES ($1, 1)", tag },
          { "SELECT pg_backend_pid() AS pid" },
        })
        local pid = tx:query_one("SELECT pg_backend_pid() AS pid").pid
        assert.equal(pid, all[2][1].pid)
        local again = assert(tx:batch{ { "SELECT count(*)::int AS c FROM " .. T .. " WHERE name = $1", tag } })
        assert.equal(1, again[1][1].c)
        error("roll back")
      end)
      assert.is_false(ok)
      assert.truthy(tostring(err):find("roll back"))
      assert.equal(0, #q("SELECT 1 FROM " .. T .. " WHERE name = $1", tag))
    end)

    it("refuses bad input with a clear error", function()
      assert.has_error(function() pg.batch("SELECT 1") end)
      local ok, msg = pcall(pg.batch, { 42 })
      assert.is_false(ok)
      assert.truthy(tostring(msg):find("troupe.pg.batch: query 1 must be a string or a table, got number", 1, true), msg)
      assert.has_error(function() pg.batch{ { values = { 1 } } } end)
      assert.has_error(function() pg.batch{ "SELECT 1", "BEGIN" } end)
      assert.has_error(function() pg.batch{ { "SELECT $1", function() end } } end)
      -- nothing was sent by a refused batch
      assert.equal(1, q("SELECT 1 AS x")[1].x)
    end)
  end)

  describe("the pool", function()
    it("times out an acquire when every connection is held (max = 1)", function()
      with_config({ max = 1, acquire_timeout = 0.2 }, function()
        local c = h.spawn("pg_client", nil, { worker = 0 })
        actor.send(c, { op = "eval", code = [[
          pg.transaction(function(tx) tx:query("SELECT pg_sleep(1)") end) ]] })
        actor.sleep(0.1)
        local res = actor.call(c, { op = "eval", code = [[
          local t0 = actor.now()
          local rows, err = pg.query("SELECT 1 AS x")
          return { dt = actor.now() - t0, code = err and err.code, message = err and err.message,
                   unavailable = err and err.unavailable } ]] }, 5)
        assert.equal("08000", res.code, tostring(res.message))
        assert.is_true(res.unavailable)
        assert.is_true(res.dt >= 0.15 and res.dt < 0.8, "waited " .. res.dt)
        -- and one pipeline slot per connection: a plain long query holds it too
        local r2 = actor.call(c, { op = "eval", code = [[
          pg.configure{ pipeline = 1 }
          actor.sleep(1)        -- the transaction above ends
          actor.send(actor.self(), { op = "eval", code = "pg.query('SELECT pg_sleep(0.6)')" })
          actor.sleep(0.1)
          local rows, err = pg.query("SELECT 1 AS x")
          return err and err.code ]] }, 5)
        assert.equal("08000", r2)
        actor.sleep(0.6)
        actor.kill(c, "kill")
      end)
    end)

    -- Closes every idle connection (idle_timeout 0.1 s; the pools check once a second).
    local function reap()
      with_config({ idle_timeout = 0.1 }, function() actor.sleep(1.3) end)
    end

    it("pipelines fast queries on few connections, and grows only when one stays busy", function()
      -- 50 fast queries at once, three times: one connection carries them all (busy
      -- only past 0.5 s here, so that a loaded machine's stall does not count)
      reap()
      with_config({ busy_after = 0.5 }, function()
        for _ = 1, 3 do assert(pg.batch((function()
          local l = {}
          for i = 1, 50 do l[i] = { "SELECT $1::int AS i", i } end
          return l end)()))
        end
      end)
      assert.equal(1, pg.stats().connections)
      -- busy_after = 0, the classic pool: a connection with a query in flight is busy
      reap()
      with_config({ busy_after = 0 }, function()
        for _ = 1, 3 do assert(pg.batch((function()
          local l = {}
          for i = 1, 50 do l[i] = "SELECT pg_sleep(0.01)" end
          return l end)()))
        end
        assert.is_true(pg.stats().connections > 1, "connections: " .. pg.stats().connections)
      end)
    end)

    it("lets the connections a lighter load no longer needs go idle and close", function()
      reap()
      with_config({ busy_after = 0 }, function()    -- grow: one query per connection
        local l = {}
        for i = 1, 12 do l[i] = "SELECT pg_sleep(0.02)" end
        assert(pg.batch(l))
        assert(pg.batch(l))
      end)
      local grown = pg.stats().connections
      assert.is_true(grown > 1, "connections: " .. grown)
      with_config({ idle_timeout = 0.3, busy_after = 0.5 }, function()
        local t_end = actor.now() + 2.5
        while actor.now() < t_end do                -- 5 concurrent queries every 20 ms
          assert(pg.batch{ "SELECT 1", "SELECT 2", "SELECT 3", "SELECT 4", "SELECT 5" })
          actor.sleep(0.02)
        end
      end)
      assert.equal(1, pg.stats().connections, "grown to " .. grown)
    end)

    it("sends new queries past a connection stuck on a slow one (busy_after)", function()
      local function fast_query_during_slow_one(busy_after)
        reap()
        local res
        with_config({ busy_after = busy_after }, function()
          res = actor.call(h.spawn("pg_client", nil, { worker = 0 }), { op = "eval", code = [[
            actor.send(actor.self(), { op = "eval", code = "pg.query('SELECT pg_sleep(0.6)')" })
            actor.sleep(0.15)
            local t0 = actor.now()
            local row = pg.query_one("SELECT 1 AS x")
            local dt = actor.now() - t0
            actor.sleep(0.6)
            return { dt = dt, x = row and row.x } ]] }, 5)
        end)
        assert.equal(1, res.x)
        return res.dt
      end
      local dt = fast_query_during_slow_one(0.05)   -- busy after 50 ms: a new connection
      assert.is_true(dt < 0.3, "the fast query waited " .. dt .. " s")
      dt = fast_query_during_slow_one(5)            -- not busy yet: pipelined behind it
      assert.is_true(dt >= 0.3, "the fast query took only " .. dt .. " s")
    end)

    it("cancels a query on the server past its statement timeout", function()
      local t0 = actor.now()
      local rows, err = pg.query({ text = "SELECT pg_sleep($1)", values = { 5 }, timeout = 0.1 })
      assert.is_nil(rows)
      assert.equal("57014", err.code)
      assert.is_true(actor.now() - t0 < 1.5, "took " .. (actor.now() - t0))
      assert.equal(1, one("SELECT 1 AS x").x)   -- the session timeout is back
      local r = one("SELECT current_setting('statement_timeout') AS t")
      assert.equal("0", r.t)
      with_config({ statement_timeout = 0.1 }, function()
        local _, e = pg.query("SELECT pg_sleep(2)")
        assert.equal("57014", e.code)
      end)
    end)

    it("keeps the slow queries, with their duration and parameter count", function()
      with_config({ slow_threshold = 0.05 }, function()
        q("SELECT pg_sleep($1), $2::text AS tag", 0.06, T)
      end)
      local slow = pg.slow_queries()
      local last = slow[#slow]
      assert.matches("pg_sleep", last.sql)
      assert.equal(2, last.params)
      assert.is_true(last.duration >= 0.05, "duration " .. last.duration)
      assert.is_true(math.abs(last.at - os.time()) < 60)
      assert.is_true(#slow <= 100)
    end)

    it("recovers from pg_terminate_backend: in-flight queries fail, the next ones succeed", function()
      local c = h.spawn("pg_client", nil, { worker = 0 })
      local res = actor.call(c, { op = "eval", code = [[
        for i = 1, 5 do actor.send(actor.self(), { op = "eval", code = "state.slept = { pg.query('SELECT pg_sleep(2)') }" }) end
        actor.sleep(0.2)
        local killer = pg.transaction(function(tx)     -- a connection of its own
          return tx:query("SELECT pg_terminate_backend(pid) AS t FROM pg_stat_activity " ..
            "WHERE application_name = 'troupe' AND query LIKE '%pg_sleep(2)%' AND pid <> pg_backend_pid()")
        end)
        actor.sleep(0.2)
        local after = pg.query_one("SELECT 1 AS x")
        return { killed = #killer, slept_err = state.slept and state.slept[2] and state.slept[2].code,
                 after = after and after.x } ]] }, 10)
      assert.is_true(res.killed >= 1)
      assert.truthy(res.slept_err == "57P01" or res.slept_err == "08006", tostring(res.slept_err))
      assert.equal(1, res.after)
      assert.is_true(pg.stats().lost >= 1)
      actor.kill(c, "kill")
    end)
  end)
end)
