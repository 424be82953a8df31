-- GET/SET throughput of troupe.redis: C coroutines (default 200, in 20 actors) each
-- alternate SET and GET on its own key for SECONDS (default 5). Prints
--   BENCH redis_getset <commands/s> ops/s
-- Not part of make test (it only measures):
--   TROUPE_REDIS_URL=redis://127.0.0.1:6379/0 \
--     build/troupe run --unsafe --workers 2 tests/integration/redis_throughput.lua [SECONDS] [C]
local actor = require "troupe.actor"
local redis = require "troupe.redis"

local SECONDS, C = tonumber((select(1, ...))) or 5, tonumber((select(2, ...))) or 200
local ACTORS = math.min(20, C)
local here = debug.getinfo(1, "S").source:match("^@(.-)[^/]*$") or ""

local worker = [[
local actor = require "troupe.actor"
local redis = require "troupe.redis"
return {
  init = function() return { n = 0, errors = 0 } end,
  handle = function(s, msg)
    if msg.op == "stats" then return { n = s.n, errors = s.errors } end
    local key, value = msg.key, string.rep("v", 16)
    while actor.now() < msg.until_t do
      local ok = redis.call("SET", key, value)
      local v = redis.call("GET", key)
      if ok and v then s.n = s.n + 2 else s.errors = s.errors + 1 end
    end
  end,
}
]]
local path = os.tmpname()
local f = assert(io.open(path, "w"))
f:write(worker)
f:close()

assert(redis.call("PING"))
local pids = {}
for i = 1, ACTORS do pids[i] = assert(actor.spawn(path, nil, { budget = 3600 })) end
local t0 = actor.now()
local until_t = t0 + SECONDS
for c = 1, C do
  actor.send(pids[(c - 1) % ACTORS + 1], { key = "bench:" .. c, until_t = until_t })
end
actor.sleep(SECONDS + 0.2)
local n, errors = 0, 0
for _, p in ipairs(pids) do
  local s = assert(actor.call(p, { op = "stats" }, 30))
  n, errors = n + s.n, errors + s.errors
end
os.remove(path)
local elapsed = actor.now() - t0
print(("BENCH redis_getset %.0f ops/s"):format(n / SECONDS))
print(("# %d commands in %.2f s from %d coroutines in %d actors; %d failed pairs"):format(
  n, elapsed, C, ACTORS, errors))
