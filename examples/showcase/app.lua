-- The showcase app: a small tour of troupe's framework, served by `make run`.
-- See examples/showcase/README.md for the routes.
local actor = require("troupe.actor")
local errors = require("troupe.errors")
local app = require("troupe.app").new()

-- In-memory data: every worker's handler VM loads its own copy of this table.
local users = {
  ["1"] = { id = 1, name = "Ada Lovelace", role = "admin" },
  ["2"] = { id = 2, name = "Alan Turing", role = "user" },
  ["3"] = { id = 3, name = "Grace Hopper", role = "user" },
}

-- Middleware: runs before every route, then hands over to the next one.
app:use(function(req, res, next)
  res:header("X-Powered-By", "troupe")
  return next()
end)

app:get("/", function(req, res)
  return res:json({
    name = "troupe showcase",
    routes = { "/api/users", "/api/users/:id", "/api/users/:id/role/:role", "/visits", "/old" },
  })
end)

app:get("/api/users", function(req, res)
  local list = {}
  for _, u in pairs(users) do list[#list + 1] = u end
  table.sort(list, function(a, b) return a.id < b.id end)
  return res:json({ success = true, data = list })
end)

app:get("/api/users/:id", function(req, res)
  local user = users[req.params.id]
  if not user then
    error(errors.new(404, "User not found"))
  end
  return res:json({ success = true, data = user })
end)

-- Two params; a bad value is the client's error (400), an unknown user a 404.
app:get("/api/users/:id/role/:role", function(req, res)
  local user = users[req.params.id]
  if not user then
    return errors.new(404, "User not found")
  end
  local role = req.params.role
  if role ~= "admin" and role ~= "user" then
    return errors.new(400, "role must be admin or user")
  end
  return res:json({ success = true, data = { id = user.id, name = user.name, is = user.role == role } })
end)

-- The visit counter is one actor for the whole process, found by name; the first
-- request to need it starts it. Two workers may race: the loser's actor is stopped.
local function counter()
  local pid = actor.whereis("showcase.visits")
  if pid then return pid end
  pid = assert(actor.spawn("counter.lua", { start = 0 }))
  if actor.register("showcase.visits", pid) then return pid end
  actor.kill(pid, "shutdown")
  return actor.whereis("showcase.visits")
end

app:get("/visits", function(req, res)
  local pid = counter()
  local n, err = nil, "no counter"
  if pid then n, err = actor.call(pid, "hit", 1) end
  if not n then
    error(errors.new(503, "visit counter unavailable: " .. tostring(err)))
  end
  return res:json({ success = true, visits = n })
end)

app:get("/old", function(req, res)
  return res:redirect("/", 301)
end)

return app
