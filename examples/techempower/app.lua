-- The TechEmpower Framework Benchmarks routes, following the benchmark's rules: every
-- response carries Server, Date, Content-Type and Content-Length (the C server adds
-- Server, Date and Content-Length; the handlers set the type).
--   troupe run examples/techempower/app.lua --workers 2 --listen 127.0.0.1:8080 --env production
-- The database routes need TROUPE_PG_URL and the schema of schema.sql (`world`: 10,000
-- rows; `fortune`: the 12 standard fortunes). `make bench-http` measures /json and
-- /plaintext against nginx+lua and Node.js; `make bench-db` the database routes against
-- Node.js (fastify + pg) and pgbench.
local app = require("troupe.app").new()
local pg = require "troupe.pg"

local random, floor, tonumber, type, error, pairs =
  math.random, math.floor, tonumber, type, error, pairs
local concat, sort = table.concat, table.sort

local WORLD = "SELECT id, randomnumber FROM world WHERE id = $1"
local FORTUNES = "SELECT id, message FROM fortune"
-- One batched UPDATE per request (allowed by the rules): the ids sorted, so that two
-- requests lock their rows in the same order and cannot deadlock each other.
local UPDATE = "UPDATE world SET randomnumber = v.r " ..
               "FROM unnest($1::int[], $2::int[]) AS v(id, r) WHERE world.id = v.id"

-- Test 1, JSON serialization: a new object for every request, encoded for every request.
app:get("/json", function(req, res)
  return res:json({ message = "Hello, World!" })
end)

-- Test 6, plaintext (also run pipelined, 16 requests deep).
app:get("/plaintext", function(req, res)
  return res:header("Content-Type", "text/plain"):send("Hello, World!")
end)

-- The number of rows a request asks for: missing, not an integer, or below 1 counts
-- as 1; above 500 as 500.
local function count(v)
  if type(v) == "table" then v = v[1] end             -- ?queries=2&queries=3
  if type(v) ~= "string" then return 1 end
  local sign, digits = v:match("^%s*([+-]?)(%d+)%s*$")
  if digits == nil or sign == "-" then return 1 end
  local n = tonumber(digits)                            -- a float past 2^63: still > 500
  if n < 1 then return 1 end
  if n > 500 then return 500 end
  return floor(n)
end

-- One random row of `world`, by its own query.
local function world_row()
  local row, err = pg.query_one(WORLD, random(1, 10000))
  if row == nil then error(err or "world: no row", 0) end
  return { id = row.id, randomNumber = row.randomnumber }
end

-- Test 2, single database query: one object.
app:get("/db", function(req, res)
  return res:json(world_row())
end)

-- Test 3, multiple database queries: an array of N objects, one query each.
-- N random rows of `world`, one query each, all sent at once (pg.batch: the queries
-- are pipelined, like Promise.all over a pool).
local function world_rows(n)
  local list = {}
  for i = 1, n do list[i] = { WORLD, random(1, 10000) } end
  local all, err = pg.batch(list)
  if all == nil then error(err, 0) end
  local worlds = {}
  for i = 1, n do
    local row = all[i][1]
    worlds[i] = { id = row.id, randomNumber = row.randomnumber }
  end
  return worlds
end

app:get("/queries", function(req, res)
  return res:json(world_rows(count(req.query.queries)))
end)

-- Test 4, fortunes: every row, one more added at request time, sorted by message,
-- HTML-escaped into a page.
local escape = require("troupe.html").escape   -- & < > " ' in C

local function by_message(a, b) return a.message < b.message end

app:get("/fortunes", function(req, res)
  local fortunes, err = pg.query(FORTUNES)
  if fortunes == nil then error(err, 0) end
  fortunes[#fortunes + 1] = { id = 0, message = "Additional fortune added at request time." }
  sort(fortunes, by_message)
  local out, k = { "<!DOCTYPE html><html><head><title>Fortunes</title></head><body>" ..
                   "<table><tr><th>id</th><th>message</th></tr>" }, 1
  for i = 1, #fortunes do
    local f = fortunes[i]
    out[k + 1] = "<tr><td>"
    out[k + 2] = f.id
    out[k + 3] = "</td><td>"
    out[k + 4] = escape(f.message)
    out[k + 5] = "</td></tr>"
    k = k + 5
  end
  out[k + 1] = "</table></body></html>"
  return res:header("Content-Type", "text/html; charset=utf-8"):send(concat(out))
end)

-- Test 5, database updates: N rows read one query each, each given a new random
-- number (never its old one, so every row read is a row changed), written back by
-- one batched UPDATE. An id drawn twice is written once, with one number for both.
local function sort_ids(a, b) return a < b end

app:get("/updates", function(req, res)
  local n = count(req.query.queries)
  local worlds, chosen = world_rows(n), {}
  for i = 1, n do
    local w = worlds[i]
    local r = chosen[w.id]
    if r == nil then
      r = random(1, 9999)
      if r >= w.randomNumber then r = r + 1 end          -- 1..10000 without the old one
      chosen[w.id] = r
    end
    w.randomNumber = r
  end
  local ids, numbers, m = {}, {}, 0
  for id in pairs(chosen) do m = m + 1; ids[m] = id end
  sort(ids, sort_ids)
  for i = 1, m do numbers[i] = chosen[ids[i]] end
  -- A deadlock with another request's UPDATE (possible only if their plans lock the
  -- rows in different orders) aborts one of them: try again, up to three times.
  for attempt = 1, 3 do
    local done, err = pg.query(UPDATE, ids, numbers)
    if done then break end
    if err.code ~= "40P01" or attempt == 3 then error(err, 0) end
  end
  return res:json(worlds)
end)

-- Cached queries come with the cache: /cached-queries?count=N.

return app
