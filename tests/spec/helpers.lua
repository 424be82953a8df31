-- tests/spec/helpers.lua: shared by the specs (not a spec itself).
--   local h = require "helpers"   (each spec puts its own directory on package.path)
-- Specs run inside `troupe test`: the spec VM is the main actor, unsafe (busted needs
-- io and C modules); actors spawned from it are sandboxed unless opts.unsafe is set.
-- The main actor has no handle(), so it cannot receive plain messages or exit/down
-- notices: specs observe those through a collector or probe actor (actors/).
local actor = require "troupe.actor"

local h = {}

-- The directory of this file, with a trailing slash ("" when it is the cwd).
h.dir = debug.getinfo(1, "S").source:match("^@(.-)[^/]*$") or ""

-- Path of a fixture actor script under tests/spec/actors/.
function h.path(name)
  return h.dir .. "actors/" .. name .. ".lua"
end

-- Spawns a fixture; fails the test (with spawn's error) when it cannot.
function h.spawn(name, args, opts)
  local pid, err = actor.spawn(h.path(name), args, opts)
  assert(pid, "spawn " .. name .. ": " .. tostring(err))
  return pid
end

-- Polls fn every 5 ms until it returns a truthy value (returned) or timeout seconds
-- (default 2) pass (then returns false).
function h.wait_until(fn, timeout)
  local deadline = actor.now() + (timeout or 2)
  while true do
    local v = fn()
    if v then return v end
    if actor.now() > deadline then return false end
    actor.sleep(0.005)
  end
end

-- A collector records every message it gets as { m = msg, from = pid, t = now }.
function h.collector()
  return h.spawn("collector")
end

-- The entries a collector holds so far (it keeps them).
function h.entries(c)
  return assert(actor.call(c, { collector = "peek" }, 2))
end

-- Just the messages.
function h.messages(c)
  local out = {}
  for i, e in ipairs(h.entries(c)) do out[i] = e.m end
  return out
end

-- Waits until the collector holds at least n entries (or until the one pred accepts,
-- when pred is given); returns the entries, or fails the test.
function h.wait_entries(c, n, timeout, pred)
  local got
  local ok = h.wait_until(function()
    got = h.entries(c)
    if pred then
      for _, e in ipairs(got) do if pred(e.m, e) then return true end end
      return false
    end
    return #got >= n
  end, timeout)
  assert(ok, ("collector: wanted %s entries, got %d"):format(pred and "matching" or n, got and #got or -1))
  return got
end

-- Waits until pid is no longer alive; true, or false at the timeout.
function h.wait_dead(pid, timeout)
  return h.wait_until(function() return not actor.alive(pid) end, timeout)
end

-- Runs Lua code inside a probe actor (actors/probe.lua): the chunk sees `actor`,
-- `state` (the probe's state: state.inbox holds the notices and messages it got) and
-- its arguments as `...`. Returns what call returns.
function h.eval(probe, code, ...)
  return actor.call(probe, { op = "eval", code = code, args = table.pack(...) }, 5)
end

-- The messages (including exit/down notices) a probe has received.
function h.inbox(probe)
  return assert(h.eval(probe, "return state.inbox"))
end

function h.wait_inbox(probe, pred, timeout)
  local found
  local ok = h.wait_until(function()
    for _, m in ipairs(h.inbox(probe)) do
      if pred(m) then found = m; return true end
    end
  end, timeout)
  return ok and found or nil
end

-- Elapsed wall time of fn(), and its results packed.
function h.timed(fn, ...)
  local t0 = actor.now()
  local r = table.pack(fn(...))
  return actor.now() - t0, r
end

return h
