-- init may not wait: actor.sleep / actor.call raise there.
local actor = require "troupe.actor"
return {
  init = function(args)
    if args == "call" then actor.call(actor.self(), "x", 0.1) else actor.sleep(0.01) end
    return {}
  end,
  handle = function() end,
}
