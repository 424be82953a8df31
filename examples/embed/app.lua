-- The HTTP app examples/embed/embed.c serves from its own process (tr_http_start).
local app = require("troupe.app").new()

local started = os.time()

app:get("/hello/:name", function(req, res)
  return res:json({ hello = req.params.name, since = started })
end)

app:post("/echo", function(req, res)
  return res:json({ got = req:json() })
end)

return app
