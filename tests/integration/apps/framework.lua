-- An app through the framework (troupe.app) for tests/integration/http.py: the
-- framework's routing, errors, middleware, JSON and per-route body limits over the
-- real server.
local errors = require("troupe.errors")
local app = require("troupe.app").new()

app:use(function(req, res, next)
  res:header("X-Middleware", "ran")
  return next()
end)

app:get("/users/:id", function(req, res)
  return res:json({ id = req.params.id, q = req.query.q })
end)

app:post("/json", function(req, res)
  local body = req:json()
  return res:status(201):json({ got = body.name, n = body.n + 1 })
end)

app:post("/limited", { body_limit = 64 }, function(req, res)
  return res:send("got " .. #req.body)
end)

app:get("/teapot", function()
  error(errors.new(418, "I'm a teapot"))
end)

app:get("/boom", function()
  local t = nil
  return t.field
end)

app:get("/stream", function(req, res)
  for i = 1, 3 do res:write("part " .. i .. "\n") end
  return res:finish()
end)

return app
