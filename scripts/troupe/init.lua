-- troupe: the framework's entry point. Modules are also required one by one:
--   local actor = require "troupe.actor"
local troupe = { version = "0.1.0" }

setmetatable(troupe, {
  -- troupe.actor, troupe.<module>: loaded on first use
  __index = function(t, name)
    local ok, mod = pcall(require, "troupe." .. name)
    if not ok then return nil end
    rawset(t, name, mod)
    return mod
  end,
})

return troupe
