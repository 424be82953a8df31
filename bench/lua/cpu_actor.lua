-- The actor of actors.lua.cpu: runs bench/lua/cpu.lua's work once per message and
-- answers { seconds, result }.
local actor = require "troupe.actor"

return {
  init = function(d) return { work = dofile(d .. "/cpu.lua") } end,
  handle = function(s)
    local t0 = actor.now()
    local r = s.work()
    return { actor.now() - t0, r }
  end,
}
