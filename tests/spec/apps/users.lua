-- A sub-app the way a user writes one (routes/users.js in express): a function that
-- builds it, so that each spec mounts a fresh one.
local App = require "troupe.app"
local errors = require "troupe.errors"

return function()
  local users = App.new()
  local db, last = { ["1"] = { id = "1", name = "ann" } }, 1

  users:use(function(req, res, next)
    res:header("x-users", req.base_path)
    return next()
  end)

  users:get("/", function(req, res)
    local list = {}
    for _, u in pairs(db) do list[#list + 1] = u end
    return res:json({ users = list, path = req.path, base = req.base_path })
  end)

  users:get("/:id", function(req, res)
    local u = db[req.params.id]
    if not u then return errors.new(404, "User not found") end
    return res:json(u)
  end)

  users:post("/", function(req, res)
    local body = req:json()
    if type(body.name) ~= "string" then
      error(errors.new(422, "Invalid user", { name = "required" }, "VALIDATION"))
    end
    last = last + 1
    local id = tostring(last)
    db[id] = { id = id, name = body.name }
    return res:status(201):json(db[id])
  end)

  return users
end
