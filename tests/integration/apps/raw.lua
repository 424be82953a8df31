-- A raw app for tests/integration/http.py: a table with _serve (and _body_limit)
-- answering through troupe.http directly, without the framework, so the server is
-- tested on its own. Routes:
--   /              "hello\n" (text/plain)
--   /echo          the request body back, with X-Method and X-Body-Length
--   /small         like /echo, with a body limit of 100 bytes (_body_limit)
--   /slow          sleeps 0.2 s, then answers with the path
--   /count         JSON: how many requests this handler VM saw, per path
--   /header?NAME   the value of the request header NAME (or 404)
--   /error         raises a Lua error (500)
--   /nothing       returns without answering (500)
--   /spin          loops forever (503 once the CPU budget is spent)
--   /stream        a chunked response in 5 pieces (troupe.http.write)
--   /split?KIND    tries to send a header that would split the response (raises)
--   anything else  "path?query" back (text/plain), so pipelined answers name their request
local http = require "troupe.http"
local actor = require "troupe.actor"

local counts = {}
local app = {}

local function text(h, status, body, headers)
  return http.respond(h, status, body, "text/plain", headers)
end

local routes = {}

routes["/"] = function(h)
  text(h, 200, "hello\n")
end

routes["/echo"] = function(h, method, _, _, body)
  body = body or ""
  http.respond(h, 200, body, "application/octet-stream",
    { ["X-Method"] = method, ["X-Body-Length"] = #body })
end
routes["/small"] = routes["/echo"]

routes["/slow"] = function(h, _, path)
  actor.sleep(0.2)
  text(h, 200, path)
end

routes["/count"] = function(h)
  http.respond_json(h, 200, counts)
end

routes["/header"] = function(h, _, _, qs)
  local v = http.header(h, qs or "")
  if v == nil then return text(h, 404, "no such header") end
  text(h, 200, v)
end

routes["/error"] = function()
  error("boom")
end

routes["/nothing"] = function() end

routes["/spin"] = function()
  while true do end
end

routes["/stream"] = function(h)
  for i = 1, 5 do
    http.write(h, "chunk " .. i .. "\n", 200, "text/plain")
  end
  http.finish(h)
end

routes["/split"] = function(h, _, _, qs)
  if qs == "name" then
    text(h, 200, "split", { ["X-Bad\r\nX-Injected"] = "1" })
  elseif qs == "ctype" then
    http.respond(h, 200, "split", "text/plain\r\nX-Injected: 1")
  elseif qs == "lf" then
    text(h, 200, "split", { ["X-Split"] = "a\nX-Injected: 1" })
  else
    text(h, 200, "split", { ["X-Split"] = "a\r\nX-Injected: 1" })
  end
end

function app:_serve(h, method, path, qs, body)
  counts[path] = (counts[path] or 0) + 1
  local route = routes[path]
  if route then return route(h, method, path, qs, body) end
  text(h, 200, qs and (path .. "?" .. qs) or path)
end

function app:_body_limit(_, path)
  if path == "/small" then return 100 end
  return nil
end

return app
