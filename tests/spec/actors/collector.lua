-- Records every message (and exit/down notice) it gets; {collector="peek"} returns
-- them as a list of { m = msg, from = sender, t = arrival time }, {collector="clear"}
-- empties it.
local actor = require "troupe.actor"
return {
  init = function(args)
    if args and args.trap then actor.trap_exit(true) end
    return { got = {} }
  end,
  handle = function(state, msg, from)
    if type(msg) == "table" and msg.collector == "peek" then return state.got end
    if type(msg) == "table" and msg.collector == "clear" then state.got = {}; return true end
    state.got[#state.got + 1] = { m = msg, from = from, t = actor.now() }
    if type(msg) == "table" and msg.type == "exit" and msg.from == nil then actor.exit(msg.reason) end
  end,
}
