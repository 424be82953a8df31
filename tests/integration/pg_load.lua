-- Continuous Postgres load for pg_failover.sh, and the actors that make it.
--   troupe run --unsafe tests/integration/pg_load.lua main SCRIPT [ACTORS] [LOOPS]
-- ACTORS actors each run LOOPS query loops at once (each its own coroutine, so the
-- queries pipeline); every 0.2 s the main script prints their totals:
--   tick SECONDS OK FAIL MAXFAIL_MS CODE MESSAGE
-- (MAXFAIL_MS: the slowest failure since the last tick; CODE/MESSAGE: the last one).
local actor = require "troupe.actor"
local pg = require "troupe.pg"

local mode, script, nactors, nloops = ...
if mode ~= "main" then
  return {
    init = function() return { ok = 0, fail = 0, maxfail = 0, code = "-", msg = "-" } end,
    handle = function(s, m)
      if m.op == "stats" then
        local r = { ok = s.ok, fail = s.fail, maxfail = s.maxfail, code = s.code, msg = s.msg }
        s.maxfail = 0
        return r
      end
      local i = 0
      while true do
        i = i + 1
        local t0 = actor.now()
        local rows, err = pg.query("SELECT $1::int AS n, pg_backend_pid() AS pid", i)
        local dt = actor.now() - t0
        if rows and rows[1].n == i then
          s.ok = s.ok + 1
        else
          s.fail = s.fail + 1
          if dt > s.maxfail then s.maxfail = dt end
          s.code = err and err.code or "?"
          s.msg = err and err.message or "wrong row"
          actor.sleep(0.005)        -- the database is away: do not spin
        end
      end
    end,
  }
end

io.stdout:setvbuf("line")
nactors, nloops = tonumber(nactors) or 6, tonumber(nloops) or 4
local workers = {}
for i = 1, nactors do
  workers[i] = assert(actor.spawn(script))
  for _ = 1, nloops do actor.send(workers[i], { op = "run" }) end
end
local t0 = actor.now()
while true do
  actor.sleep(0.2)
  local ok, fail, maxfail, code, msg = 0, 0, 0, "-", "-"
  for _, w in ipairs(workers) do
    local r = actor.call(w, { op = "stats" }, 2)
    if r then
      ok, fail = ok + r.ok, fail + r.fail
      if r.maxfail > maxfail then maxfail = r.maxfail end
      if r.code ~= "-" then code, msg = r.code, r.msg end
    end
  end
  print(("tick %.1f %d %d %d %s %s"):format(actor.now() - t0, ok, fail,
                                             math.floor(maxfail * 1000), code, msg))
  local p = pg.stats()                     -- for the log when a check fails
  print(("pool connections %d connecting %d waiting %d inflight %d down %d connects %d failures %d lost %d"):format(
    p.connections, p.connecting, p.waiting, p.inflight, p.pools_down, p.connects,
    p.connect_failures, p.lost))
end
