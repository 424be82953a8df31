-- The HTTP side of redis_restart.sh: GET /incr answers the counter, or 503 when Redis
-- is unavailable (troupe.redis raises it inside a handler).
local redis = require "troupe.redis"
local app = require("troupe.app").new({ log = false })

app:get("/incr", function(req, res)
  local n, err = redis.call("INCR", "restart:http")
  if not n then return res:status(500):json({ error = err }) end
  return res:json({ n = n })
end)

return app
