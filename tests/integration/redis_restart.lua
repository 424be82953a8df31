-- Run by redis_restart.sh: load on Redis from 40 coroutines in 4 actors, two pub/sub
-- subscribers (an actor by pid, a function and a pattern in this VM), for DURATION seconds while the
-- script restarts the server. Then checks that failing calls failed fast, that calls
-- succeed again afterwards, and that the subscriptions were restored.
--   troupe run --unsafe --workers 2 redis_restart.lua DURATION
local actor = require "troupe.actor"
local redis = require "troupe.redis"

local DURATION = tonumber((...)) or 8
local here = debug.getinfo(1, "S").source:match("^@(.-)[^/]*$") or ""
local CH, KEY = "restart:ticks", "restart:n"
local passed, failed = 0, 0

local function check(name, ok, detail)
  if ok then passed = passed + 1 else failed = failed + 1 end
  print(("%s - %s%s"):format(ok and "ok" or "not ok", name, detail and (" (" .. detail .. ")") or ""))
end

local function spawn()
  return assert(actor.spawn(here .. "redis_restart_actor.lua", nil, { budget = 60 }))
end

assert(redis.call("DEL", KEY))
local loaders = {}
for i = 1, 4 do loaders[i] = spawn() end
local sub = spawn()
assert(redis.subscribe(CH, sub))
local by_fn = {}
assert(redis.subscribe(CH, function(message) by_fn[#by_fn + 1] = { t = actor.now(), message = message } end))
local by_pattern = {}
assert(redis.psubscribe("restart:tick?", function(message, channel, pattern)
  by_pattern[#by_pattern + 1] = { t = actor.now(), message = message, channel = channel }
end))

local t_end = actor.now() + DURATION
for _, p in ipairs(loaders) do
  for _ = 1, 10 do actor.send(p, { op = "load", key = KEY, until_t = t_end }) end
end
print("READY")
io.stdout:flush()

local published = 0
local i = 0
while actor.now() < t_end do
  i = i + 1
  if redis.publish(CH, tostring(i)) then published = published + 1 end
  actor.sleep(0.1)
end
actor.sleep(0.5)

local total = { ok = 0, fail = 0, ok_before = 0, max_fail = {}, errors = {} }
local first_fail, last_fail, all_recovered = math.huge, 0, true
for _, p in ipairs(loaders) do
  local s = assert(actor.call(p, { op = "stats" }, 5))
  total.ok, total.fail = total.ok + s.ok, total.fail + s.fail
  total.ok_before = total.ok_before + s.ok_before
  for k, t in pairs(s.max_fail) do total.max_fail[k] = math.max(total.max_fail[k] or 0, t) end
  if s.first_fail and s.first_fail < first_fail then first_fail = s.first_fail end
  if s.last_fail and s.last_fail > last_fail then last_fail = s.last_fail end
  if s.ok_after == 0 then all_recovered = false end
  for k, n in pairs(s.errors) do total.errors[k] = (total.errors[k] or 0) + n end
end
local kinds = {}
for k, n in pairs(total.errors) do
  kinds[#kinds + 1] = ("%s: %d, slowest %.1f ms"):format(k, n, total.max_fail[k] * 1000)
end
table.sort(kinds)
print(("# %d calls succeeded, %d failed; outage seen for %.2f s; errors: %s"):format(
  total.ok, total.fail, total.fail > 0 and last_fail - first_fail or 0, table.concat(kinds, ", ")))

check("calls succeed before the restart", total.ok_before > 0, total.ok_before .. " ok")
check("calls fail during the outage", total.fail > 0 and last_fail - first_fail > 0.5,
      total.fail .. " failed")
local others = 0
for k, n in pairs(total.errors) do
  if k ~= "not connected" and k ~= "connection lost" then others = others + n end
end
check("calls fail with 'not connected' or 'connection lost' only", others == 0)
check("each call made while Redis is down fails in under 100 ms",
      (total.errors["not connected"] or 0) > 0 and total.max_fail["not connected"] < 0.1,
      ("slowest %.1f ms"):format((total.max_fail["not connected"] or 0) * 1000))
-- In flight when the server went: failed when the socket closed, not at the timeout.
check("calls in flight when Redis went away fail in under 1 s",
      (total.max_fail["connection lost"] or 0) < 1,
      ("slowest %.1f ms"):format((total.max_fail["connection lost"] or 0) * 1000))
check("every load actor succeeds again after the restart", all_recovered)
local n = tonumber(redis.call("GET", KEY)) or -1
check("the counter holds every successful INCR made after the restart", n > 0 and n <= total.ok,
      ("GET %d, %d ok in all"):format(n, total.ok))

local function after(list)
  local c = 0
  for _, m in ipairs(list) do if m.t > last_fail then c = c + 1 end end
  return c
end
local got = assert(actor.call(sub, { op = "got" }, 5))
check("the actor subscription gets messages after the restart", after(got) > 0,
      ("%d of %d after"):format(after(got), #got))
check("the function subscription gets messages after the restart", after(by_fn) > 0,
      ("%d of %d after"):format(after(by_fn), #by_fn))
check("the pattern subscription gets messages after the restart", after(by_pattern) > 0 and
      by_pattern[#by_pattern].channel == CH,
      ("%d of %d after"):format(after(by_pattern), #by_pattern))
print(("%d passed, %d failed"):format(passed, failed))
io.stdout:flush()
if failed > 0 then error("redis restart: " .. failed .. " checks failed") end
