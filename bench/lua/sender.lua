-- bench/lua/sender.lua: on {to = pid, n = N, batch = B, yield = "self"|"sleep"},
-- sends the integers 1..N to `to` with actor.send, B at a time, giving the worker
-- back between batches so the receiver runs meanwhile.
--   "self"  (default): after a batch, send {more = true} to itself and return; the
--           next batch runs as a new message, queued behind anything else for it.
--   "sleep": actor.sleep(0) between batches inside one handler (a 0 ms timer).
-- Why batches: the first send wakes the idle receiver into the *sender's* worker's
-- LIFO slot, which the other worker cannot steal; with no yield the receiver starts
-- only after the last send (measured: first message handled at the moment the 2M-th
-- was sent), the mailbox grows to N messages and one handler runs past the 1 s CPU
-- budget. Self-message and sleep(0) measured the same within noise for batches of
-- 1,000 to 100,000 (`actors.lua oneway-variants`); "self" is the default because it
-- needs no timer and is what bench/actors.c's sender does (it uses batches of 1,000).
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
