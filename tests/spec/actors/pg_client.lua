-- A Postgres client for pg_spec.lua: {op="query", i=} (sent) runs a query that
-- echoes i and records whether the answer was its own; {op="count"} (a call)
-- returns the tallies; {op="eval", code=} runs code with `pg`, `actor` and `state`
-- (like probe.lua) and answers with its results.
local actor = require "troupe.actor"
local pg = require "troupe.pg"

return {
  init = function() return { ok = 0, bad = 0, errors = {}, pids = {}, npids = 0 } end,
  handle = function(state, msg)
    if msg.op == "query" then
      local rows, err = pg.query("SELECT $1::int AS n, $2::text AS s, pg_backend_pid() AS pid",
                                 msg.i, "v" .. msg.i)
      local row = rows and rows[1]
      if row and row.n == msg.i and row.s == "v" .. msg.i and #rows == 1 then
        state.ok = state.ok + 1
        if not state.pids[row.pid] then state.pids[row.pid] = true; state.npids = state.npids + 1 end
      else
        state.bad = state.bad + 1
        state.errors[#state.errors + 1] = tostring(err or "wrong row")
      end
    elseif msg.op == "count" then
      return { ok = state.ok, bad = state.bad, errors = state.errors, backends = state.npids }
    elseif msg.op == "eval" then
      local env = setmetatable({ actor = actor, state = state, pg = pg }, { __index = _G })
      local f = assert(load(msg.code, "=pg_client", "t", env))
      local args = msg.args or { n = 0 }
      return f(table.unpack(args, 1, args.n or #args))
    end
  end,
}
