-- A sandboxed actor whose handler waits inside xpcall (the sandbox's xpcall must
-- let the protected function yield, as the stock one does).
local actor = require "troupe.actor"
return {
  handle = function(state, msg)
    local ok, v = xpcall(function() actor.sleep(0.01); return msg * 2 end, debug.traceback)
    return { ok = ok, v = v }
  end,
}
