-- bench/lua/sender.lua: on {to = pid, n = N, batch = B, yield = "self"|"sleep"},
-- sends the integers 1..N to `to` with actor.send, B at a time, giving the worker
-- back between batches so the receiver runs meanwhile.
--   "self"  (default): after a batch, send {more = true} to itself and return; the
--           next batch runs as a new message, queued behind anything else for it.
--   "sleep": actor.sleep(0) between batches inside one handler (a 0 ms timer).
local actor = require "troupe.actor"
local send, self = actor.send, actor.self

local function batch(state)
  local to, sent, n = state.to, state.sent, state.n
  local last = sent + state.batch
  if last > n then last = n end
  for i = sent + 1, last do
    send(to, i)
  end
  state.sent = last
  return last < n
end

return {
  init = function() return {} end,
  handle = function(state, msg)
    if msg.more then
      if batch(state) then send(self(), msg) end
      return
    end
    state.to, state.n, state.sent, state.batch = msg.to, msg.n, 0, msg.batch or 10000
    if msg.yield == "sleep" then
      while batch(state) do actor.sleep(0) end
    elseif batch(state) then
      send(self(), { more = true })
    end
    return true
  end,
}
