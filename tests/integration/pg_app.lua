-- An app for pg_failover.sh: /db reads one row, /tx runs a transaction. With the
-- database away, both answer 503 (troupe.pg raises it inside a handler).
local app = require("troupe.app").new()
local pg = require "troupe.pg"

app:get("/db", function(req, res)
  local row, err = pg.query_one("SELECT 1 AS x")
  if not row then error(err) end
  return res:json(row)
end)

app:get("/tx", function(req, res)
  local n = assert(pg.transaction(function(tx)
    return tx:query_one("SELECT 2 AS x").x
  end))
  return res:json({ x = n })
end)

return app
