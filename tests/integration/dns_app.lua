-- An app for dns.sh: /pg and /redis use the drivers (their URLs name hosts the
-- slowdns.c shim resolves slowly); /plain answers at once.
local app = require("troupe.app").new()
local pg = require "troupe.pg"
local redis = require "troupe.redis"

app:get("/plain", function(req, res) return res:send("plain") end)

app:get("/pg", function(req, res)
  local ok, row, err = pcall(pg.query_one, "SELECT 41 + 1 AS x")
  if ok and row then return res:json(row) end
  return res:status(503):json({ error = tostring(err or row) })
end)

app:get("/redis", function(req, res)
  local ok, v, err = pcall(redis.call, "PING")
  if ok and v then return res:json({ pong = v }) end
  return res:status(503):json({ error = tostring(err or v) })
end)

app:get("/reconfigure", function(req, res)
  pg.configure({ url = req.query.pg })
  redis.configure({ url = req.query.redis })
  return res:send("ok")
end)

return app
