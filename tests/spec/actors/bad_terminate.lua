local actor = require "troupe.actor"
return {
  handle = function(_, m) if m == "stop" then actor.exit("normal") end return "ok" end,
  terminate = function() error("terminate exploded") end,
}
