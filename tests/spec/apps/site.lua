-- An app script as `troupe run` loads it: it returns the app. Used by the specs
-- (loaded with dofile, so each load is a fresh app).
local App = require "troupe.app"
local errors = require "troupe.errors"
local actor = require "troupe.actor"

local app = App.new({ log = false })

app:use(function(req, res, next)
  res:header("x-served-by", "site")
  return next()
end)

app:get("/json", function(req, res)
  return res:json({ message = "Hello, World!" })
end)

app:get("/plaintext", function(req, res)
  return res:text("Hello, World!")
end)

app:get("/slow", function(req, res)
  actor.sleep(tonumber(req.query.s) or 0.05)
  return res:json({ slept = true, id = req.id })
end)

app:use("/admin", function(req, res, next)
  if req:header("authorization") ~= "Bearer secret" then
    return errors.new(401, "Unauthorized")
  end
  return next()
end)

app:get("/admin/stats", function(req, res)
  return res:json({ ok = true })
end)

app:use("/api/users", require("apps.users")())

return app
