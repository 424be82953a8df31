-- bench/lua/counter.lua: counts the messages it gets (oneway).
--   call {expect = N}: reset the count; answer true.
--   call "wait": answer, once N messages have arrived, the actor.now() time at
--                which the N-th arrived.
--   anything else sent: one more.
local actor = require "troupe.actor"
local now, sleep = actor.now, actor.sleep

return {
  init = function() return { count = 0, expect = -1 } end,
  handle = function(state, msg)
    if msg == "wait" then
      while state.count < state.expect do sleep(0.001) end
      return state.done_at
    elseif type(msg) == "table" then
      state.count, state.expect, state.done_at = 0, msg.expect, nil
      return true
    end
    local c = state.count + 1
    state.count = c
    if c == state.expect then state.done_at = now() end
  end,
}
