-- bench/lua/server.lua: answers every call with the message it got (roundtrip).
return {
  handle = function(state, msg, from)
    return msg
  end,
}
