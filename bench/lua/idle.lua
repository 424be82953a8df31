-- bench/lua/idle.lua: an idle actor (spawn_10k, bytes_per_actor). It records the
-- bytes its VM holds at the end of init; a call answers {init = that, now = bytes
-- held now}.
return {
  init = function()
    return { bytes = collectgarbage("count") * 1024 }
  end,
  handle = function(state)
    return { init = state.bytes, now = collectgarbage("count") * 1024 }
  end,
}
