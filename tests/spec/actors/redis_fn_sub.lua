-- Subscribes a function to args.channel in init (the way an app subscribes at load);
-- {op = "got"} returns the messages it got, as { {message, channel}, ... }.
local redis = require "troupe.redis"
return {
  init = function(args)
    local state = { got = {} }
    assert(redis.subscribe(args.channel, function(message, channel)
      state.got[#state.got + 1] = { message, channel }
    end))
    return state
  end,
  handle = function(state, msg)
    if msg.op == "got" then return state.got end
  end,
}
