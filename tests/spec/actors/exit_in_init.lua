-- Asks to exit from init.
local actor = require "troupe.actor"
return {
  init = function(reason) actor.exit(reason or "normal"); return {} end,
  handle = function() return "still here" end,
}
