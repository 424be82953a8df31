-- Spawns a script given by a path relative to this file's directory.
local actor = require "troupe.actor"
return {
  handle = function(_, m)
    local pid, err = actor.spawn(m.script, m.args, m.opts)
    return { pid = pid, err = err }
  end,
}
