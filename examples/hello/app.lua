-- The smallest troupe app: a few routes, a JSON answer and an HTTP error.
--   troupe run examples/hello/app.lua --listen 127.0.0.1:8080
--   curl localhost:8080/hello/ada       -> Hello, ada!
--   curl localhost:8080/time            -> {"now":...}
--   curl localhost:8080/teapot          -> 418 {"success":false,"error":"I'm a teapot"}
local errors = require("troupe.errors")
local app = require("troupe.app").new()

app:get("/", function(req, res)
  return res:header("Content-Type", "text/plain"):send("Hello from troupe!\n")
end)

app:get("/hello/:name", function(req, res)
  return res:header("Content-Type", "text/plain"):send("Hello, " .. req.params.name .. "!\n")
end)

app:get("/time", function(req, res)
  return res:json({ now = os.time(), zone = "UTC" })
end)

-- An HTTP error, raised: the error handler turns it into a JSON body with its status.
app:get("/teapot", function(req, res)
  error(errors.new(418, "I'm a teapot"))
end)

-- Any other Lua error becomes a 500; its message is hidden in production.
app:get("/boom", function(req, res)
  local t = nil
  return res:send(t.field)
end)

return app
