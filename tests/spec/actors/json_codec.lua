-- Encodes and decodes with troupe.json inside a sandboxed actor.
local json = require "troupe.json"

return {
  handle = function(_, msg)
    if msg.op == "encode" then return json.encode(msg.value) end
    if msg.op == "decode" then return json.decode(msg.text) end
    if msg.op == "is_null" then return msg.value == json.null end
    error("unknown op " .. tostring(msg.op))
  end,
}
