-- bench/lua/client.lua: on a call {server = pid, n = N}, calls the server N times in
-- a row (each call waits for its reply) and answers with the seconds it took.
local actor = require "troupe.actor"
local call, now = actor.call, actor.now

return {
  handle = function(state, msg)
    local server, n = msg.server, msg.n
    local t0 = now()
    for i = 1, n do
      local r, err = call(server, i)
      if r ~= i then error("roundtrip: bad reply " .. tostring(r) .. " " .. tostring(err)) end
    end
    return now() - t0
  end,
}
