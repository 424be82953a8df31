-- The TechEmpower Framework Benchmarks routes, following the benchmark's rules: every
-- response carries Server, Date, Content-Type and Content-Length (the C server adds
-- Server, Date and Content-Length; the handlers set the type).
--   troupe run examples/techempower/app.lua --workers 2 --listen 127.0.0.1:8080 --env production
-- `make bench-http` measures /json and /plaintext against nginx+lua and Node.js.
local app = require("troupe.app").new()

-- Test 1, JSON serialization: a new object for every request, encoded for every request.
app:get("/json", function(req, res)
  return res:json({ message = "Hello, World!" })
end)

-- Test 6, plaintext (also run pipelined, 16 requests deep).
app:get("/plaintext", function(req, res)
  return res:header("Content-Type", "text/plain"):send("Hello, World!")
end)

-- Tests 2 to 5 and cached queries come with the Postgres pool and the cache, on the
-- `world` and `fortune` tables:
--   /db, /queries?queries=N, /fortunes, /updates?queries=N, /cached-queries?count=N

return app
