-- Hot code upgrade of Lua actors: actor.reload(path) asks every actor spawned from
-- path to load it again at its next message boundary; the new module's
-- upgrade(old_state, old_version) makes the new state. pid, mailbox and links stay;
-- a failed load or upgrade keeps the old code and state.
-- The fixtures are written by the spec into a temp dir (they change during a test).
package.path = debug.getinfo(1, "S").source:match("^@(.-)[^/]*$") .. "?.lua;" .. package.path
local actor = require "troupe.actor"
local h = require "helpers"

-- A counter. v1 keeps { n }; v2 keeps { count, from (v1's version), by_v2 }.
local COUNTER_V1 = [[
local actor = require "troupe.actor"
return {
  version = 1,
  init = function(args) return { n = args and args.n or 0 } end,
  handle = function(s, m)
    if m == "inc" then s.n = s.n + 1; return nil end
    if m == "spin" then                    -- holds the actor: its mailbox fills up
      local t = actor.now()
      while actor.now() - t < 0.2 do end
      return "spun"
    end
    if m == "self" then return actor.self() end
    if m == "sleep" then actor.sleep(0.3); return "v1 woke n=" .. s.n end
    return "v1 n=" .. s.n
  end,
}
]]

local COUNTER_V2 = [[
local actor = require "troupe.actor"
return {
  version = 2,
  upgrade = function(old, old_version)
    return { count = old.n, from = old_version, by_v2 = 0 }
  end,
  handle = function(s, m)
    if m == "inc" then s.count = s.count + 1; s.by_v2 = s.by_v2 + 1; return nil end
    if m == "self" then return actor.self() end
    if m == "state" then return s end
    return "v2 count=" .. s.count .. " from=" .. tostring(s.from)
  end,
}
]]

-- v2 whose upgrade raises
local COUNTER_BAD_UPGRADE = [[
return {
  version = 2,
  upgrade = function(old) error("cannot convert n=" .. old.n) end,
  handle = function(s, m) return "bad v2" end,
}
]]

-- v2 that does not load (syntax error on line 3)
local COUNTER_SYNTAX = [[
return {
  version = 2,
  handle = function(s, m) return "never" end end,
}
]]

-- v3 without upgrade(): keeps the state it finds
local COUNTER_V3_PLAIN = [[
return {
  version = 3,
  handle = function(s, m) return "v3 n=" .. tostring(s.n) end,
}
]]

local tmp_files = {}

-- A fresh temp path ending in .lua (removed in teardown).
local function tmp_path(tag)
  local base = os.tmpname()            -- creates the file: keep it, remove it later
  tmp_files[#tmp_files + 1] = base
  local p = base .. "_" .. tag .. ".lua"
  tmp_files[#tmp_files + 1] = p
  return p
end

local function write(path, text)
  local f = assert(io.open(path, "w"))
  assert(f:write(text))
  assert(f:close())
end

-- Writes text to a new temp file and spawns an actor from it: pid, path.
local function spawn_from(text, args, tag)
  local path = tmp_path(tag or "counter")
  write(path, text)
  local pid, err = actor.spawn(path, args)
  assert(pid, "spawn: " .. tostring(err))
  return pid, path
end

local function call(pid, m)
  local r, err = actor.call(pid, m, 5)
  assert(r ~= nil, "call " .. tostring(m) .. ": " .. tostring(err))
  return r
end

describe("actor.reload (hot upgrade of Lua actors)", function()
  local spawned = {}

  local function track(pid)
    spawned[#spawned + 1] = pid
    return pid
  end

  after_each(function()
    for _, pid in ipairs(spawned) do
      if actor.alive(pid) then actor.kill(pid, "kill") end
    end
    spawned = {}
    for _, p in ipairs(tmp_files) do os.remove(p) end
    tmp_files = {}
  end)

  it("upgrade(old_state, old_version) converts the state; the new code answers", function()
    local pid, path = spawn_from(COUNTER_V1)
    track(pid)
    for _ = 1, 3 do actor.send(pid, "inc") end
    assert.equal("v1 n=3", call(pid, "get"))
    write(path, COUNTER_V2)
    assert.equal(1, actor.reload(path))
    assert.equal("v2 count=3 from=1", call(pid, "get"))
    actor.send(pid, "inc")
    assert.same({ count = 4, from = 1, by_v2 = 1 }, call(pid, "state"))
  end)

  it("upgrades every actor spawned from the file, each with its own state", function()
    local path = tmp_path("many")
    write(path, COUNTER_V1)
    local pids = {}
    for i = 1, 5 do pids[i] = track(assert(actor.spawn(path, { n = i * 10 }))) end
    local other = track((spawn_from(COUNTER_V1, { n = 7 }, "other")))
    write(path, COUNTER_V2)
    assert.equal(5, actor.reload(path))
    for i = 1, 5 do assert.equal("v2 count=" .. i * 10 .. " from=1", call(pids[i], "get")) end
    assert.equal("v1 n=7", call(other, "get"))   -- another file: untouched
  end)

  it("keeps the old code and state when upgrade raises", function()
    local pid, path = spawn_from(COUNTER_V1)
    track(pid)
    actor.send(pid, "inc")
    actor.send(pid, "inc")
    write(path, COUNTER_BAD_UPGRADE)
    assert.equal(1, actor.reload(path))
    assert.equal("v1 n=2", call(pid, "get"))
    actor.send(pid, "inc")
    assert.equal("v1 n=3", call(pid, "get"))
    assert.is_true(actor.alive(pid))
    -- and a good version later still upgrades it
    write(path, COUNTER_V2)
    assert.equal(1, actor.reload(path))
    assert.equal("v2 count=3 from=1", call(pid, "get"))
  end)

  it("keeps the old code and state when the new file has a syntax error", function()
    local pid, path = spawn_from(COUNTER_V1)
    track(pid)
    for _ = 1, 4 do actor.send(pid, "inc") end
    write(path, COUNTER_SYNTAX)
    assert.equal(1, actor.reload(path))
    assert.equal("v1 n=4", call(pid, "get"))
    actor.send(pid, "inc")
    assert.equal("v1 n=5", call(pid, "get"))
  end)

  it("keeps the old code when the file is gone", function()
    local pid, path = spawn_from(COUNTER_V1)
    track(pid)
    actor.send(pid, "inc")
    os.remove(path)
    assert.equal(1, actor.reload(path))
    assert.equal("v1 n=1", call(pid, "get"))
  end)

  it("keeps the state as it is when the new module has no upgrade()", function()
    local pid, path = spawn_from(COUNTER_V1)
    track(pid)
    actor.send(pid, "inc")
    write(path, COUNTER_V3_PLAIN)
    assert.equal(1, actor.reload(path))
    assert.equal("v3 n=1", call(pid, "get"))
  end)

  it("keeps pid and mailbox: messages queued before the reload are all handled, in order",
     function()
    local pid, path = spawn_from(COUNTER_V1)
    track(pid)
    actor.send(pid, "spin")                  -- busy 0.2 s: the next messages queue up
    for _ = 1, 10 do actor.send(pid, "inc") end
    write(path, COUNTER_V2)
    assert.equal(1, actor.reload(path))      -- the upgrade queues behind them
    for _ = 1, 10 do actor.send(pid, "inc") end
    local st = call(pid, "state")
    -- 10 counted by v1 before the upgrade, 10 by v2 after: nothing lost or reordered
    assert.same({ count = 20, from = 1, by_v2 = 10 }, st)
    assert.equal(pid, call(pid, "self"))
    assert.is_true(actor.alive(pid))
  end)

  it("lets a handler in flight (suspended in sleep) finish on the old code", function()
    local pid, path = spawn_from(COUNTER_V1)
    track(pid)
    actor.send(pid, "inc")
    local waiter = track(h.spawn("probe"))
    -- the probe calls the counter's slow handler; its answer lands in the probe
    actor.send(waiter, { op = "eval", code = [[
      local pid = ...
      state.slow = actor.call(pid, "sleep", 5)
    ]], args = table.pack(pid) })
    actor.sleep(0.1)                         -- the counter is inside sleep(0.3) now
    write(path, COUNTER_V2)
    assert.equal(1, actor.reload(path))
    assert.equal("v2 count=1 from=1", call(pid, "get"))   -- new messages: new code
    assert.truthy(h.wait_until(function() return h.eval(waiter, "return state.slow") end, 3),
                  "the slow call never answered")
    assert.equal("v1 woke n=1", h.eval(waiter, "return state.slow"))
  end)

  it("keeps links: a linked, trapping actor sees the upgraded actor's exit", function()
    local pid, path = spawn_from(COUNTER_V1)
    track(pid)
    local trapper = track(h.spawn("probe", { trap = true, link = pid }))
    write(path, COUNTER_V2)
    assert.equal(1, actor.reload(path))
    assert.equal("v2 count=0 from=1", call(pid, "get"))
    actor.kill(pid, "error")
    local m = h.wait_inbox(trapper, function(x)
      return type(x) == "table" and x.type == "exit" and x.from == pid
    end)
    assert.truthy(m, "no exit notice from the upgraded actor")
  end)

  it("matches the path by its real path (./ and .. spellings)", function()
    local pid, path = spawn_from(COUNTER_V1)
    track(pid)
    local dir, name = path:match("^(.*)/([^/]*)$")
    write(path, COUNTER_V2)
    assert.equal(1, actor.reload(dir .. "/./" .. name))
    assert.equal("v2 count=0 from=1", call(pid, "get"))
  end)

  it("returns 0 for a path no actor was spawned from", function()
    local pid = spawn_from(COUNTER_V1)
    track(pid)
    assert.equal(0, actor.reload("/nonexistent/troupe/no_such_actor.lua"))
    assert.equal(0, actor.reload(tmp_path("unused")))
    assert.equal("v1 n=0", call(pid, "get"))
  end)

  it("with no path, upgrades only the actors whose file changed on disk", function()
    local a, pa = spawn_from(COUNTER_V1, nil, "changed")
    local b = spawn_from(COUNTER_V1, nil, "unchanged")
    track(a)
    track(b)
    write(pa, COUNTER_V2)
    assert.is_true(actor.reload() >= 2)      -- every Lua actor is asked
    assert.equal("v2 count=0 from=1", call(a, "get"))
    assert.equal("v1 n=0", call(b, "get"))
  end)

  it("raises on a path that is not a string", function()
    assert.has_error(function() actor.reload({}) end)
  end)
end)
