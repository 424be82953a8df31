-- actor.supervisor: Lua children, restart strategies and policies, intensity.
-- Children are actors/service.lua with notify = a collector: each start sends
-- {started = pid, id = id}, each exit {terminated = pid, id = id, reason = reason}.
package.path = debug.getinfo(1, "S").source:match("^@(.-)[^/]*$") .. "?.lua;" .. package.path
local actor = require "troupe.actor"
local h = require "helpers"

-- The pids child id was started as, in order.
local function starts(c, id)
  local out = {}
  for _, m in ipairs(h.messages(c)) do
    if type(m) == "table" and m.started and m.id == id then out[#out + 1] = m.started end
  end
  return out
end

local function terminations(c, id)
  local out = {}
  for _, m in ipairs(h.messages(c)) do
    if type(m) == "table" and m.terminated and m.id == id then out[#out + 1] = m.reason end
  end
  return out
end

-- Waits until child id has been started n times; returns its latest pid.
local function wait_started(c, id, n)
  assert(h.wait_until(function() return #starts(c, id) >= n end),
    ("child %s: wanted %d starts, got %d"):format(id, n, #starts(c, id)))
  local s = starts(c, id)
  return s[#s]
end

local function child(c, id, extra)
  local spec = { id = id, script = h.path("service"), args = { notify = c, id = id } }
  for k, v in pairs(extra or {}) do spec[k] = v end
  return spec
end

local function sup(c, opts, ids)
  local spec = { strategy = opts.strategy, intensity = opts.intensity, period = opts.period,
                 children = {} }
  for i, id in ipairs(ids) do
    spec.children[i] = child(c, type(id) == "table" and id[1] or id, type(id) == "table" and id[2] or nil)
  end
  return assert(actor.supervisor(spec))
end

describe("actor.supervisor", function()
  it("starts its children in order with their args", function()
    local c = h.collector()
    local s = sup(c, {}, { "a", "b", "c" })
    assert.is_true(actor.alive(s))
    local got = h.wait_entries(c, 3)
    assert.same({ "a", "b", "c" }, { got[1].m.id, got[2].m.id, got[3].m.id })
    assert.equal("pong", actor.call(got[2].m.started, "ping"))
    actor.kill(s, "kill")
  end)

  it("one_for_one: a crashed child is restarted with a new pid, its siblings are left alone", function()
    local c = h.collector()
    local s = sup(c, { strategy = "one_for_one" }, { "a", "b" })
    local a1, b1 = wait_started(c, "a", 1), wait_started(c, "b", 1)
    actor.kill(a1, "kill")
    local a2 = wait_started(c, "a", 2)
    assert.are_not.equal(a1, a2)
    assert.is_false(actor.alive(a1))
    assert.equal("pong", actor.call(a2, "ping"))
    assert.equal(1, #starts(c, "b"))
    assert.is_true(actor.alive(b1))
    actor.kill(s, "kill")
  end)

  it("restarts a child that exits with an error", function()
    local c = h.collector()
    local s = sup(c, {}, { "a" })
    actor.send(wait_started(c, "a", 1), { op = "exit", v = "error" })
    wait_started(c, "a", 2)
    actor.kill(s, "kill")
  end)

  it("one_for_all: one crash restarts every child", function()
    local c = h.collector()
    local s = sup(c, { strategy = "one_for_all" }, { "a", "b", "c" })
    local a1, b1, c1 = wait_started(c, "a", 1), wait_started(c, "b", 1), wait_started(c, "c", 1)
    actor.kill(b1, "kill")
    local a2, b2, c2 = wait_started(c, "a", 2), wait_started(c, "b", 2), wait_started(c, "c", 2)
    assert.are_not.equal(a1, a2)
    assert.are_not.equal(b1, b2)
    assert.are_not.equal(c1, c2)
    assert.same({ "shutdown" }, terminations(c, "a"))   -- siblings stopped in order
    assert.same({ "shutdown" }, terminations(c, "c"))
    actor.kill(s, "kill")
  end)

  it("rest_for_one: a crash restarts that child and the ones started after it", function()
    local c = h.collector()
    local s = sup(c, { strategy = "rest_for_one" }, { "a", "b", "c" })
    local a1 = wait_started(c, "a", 1)
    local b1 = wait_started(c, "b", 1)
    wait_started(c, "c", 1)
    actor.kill(b1, "kill")
    wait_started(c, "b", 2)
    wait_started(c, "c", 2)
    assert.equal(1, #starts(c, "a"))
    assert.is_true(actor.alive(a1))
    actor.kill(s, "kill")
  end)

  it("restart policies: permanent, transient and temporary children on a normal exit", function()
    local c = h.collector()
    local s = sup(c, {}, { { "perm", { restart = "permanent" } },
                           { "trans", { restart = "transient" } },
                           { "temp", { restart = "temporary" } } })
    for _, id in ipairs({ "perm", "trans", "temp" }) do
      actor.send(wait_started(c, id, 1), { op = "exit", v = "normal" })
    end
    wait_started(c, "perm", 2)
    assert.truthy(h.wait_until(function()
      return #terminations(c, "trans") == 1 and #terminations(c, "temp") == 1
    end))
    -- a round trip through the supervisor's children later, still one start each
    actor.call(wait_started(c, "perm", 2), "ping")
    assert.equal(1, #starts(c, "trans"))
    assert.equal(1, #starts(c, "temp"))
    actor.kill(s, "kill")
  end)

  it("restarts a transient child that crashes, not a temporary one", function()
    local c = h.collector()
    local s = sup(c, {}, { { "trans", { restart = "transient" } },
                           { "temp", { restart = "temporary" } } })
    actor.kill(wait_started(c, "trans", 1), "kill")
    actor.kill(wait_started(c, "temp", 1), "kill")
    wait_started(c, "trans", 2)
    actor.call(wait_started(c, "trans", 2), "ping")
    assert.equal(1, #starts(c, "temp"))
    actor.kill(s, "kill")
  end)

  it("gives up past its intensity: stops the children and exits with 'shutdown'", function()
    local c = h.collector()
    local s = sup(c, { intensity = 2, period = 10 }, { "a", "b" })
    local w = h.spawn("probe", { monitor = s })
    for i = 1, 2 do
      actor.kill(wait_started(c, "a", i), "kill")
    end
    local a3 = wait_started(c, "a", 3)         -- two restarts: within the intensity
    assert.is_true(actor.alive(s))
    actor.kill(a3, "kill")                      -- the third is one too many
    local down = h.wait_inbox(w, function(m) return m.type == "down" and m.from == s end)
    assert.truthy(down, "the supervisor did not exit")
    assert.equal("shutdown", down.reason)
    assert.is_false(actor.alive(s))
    assert.same({ "shutdown" }, terminations(c, "b"))
    assert.equal(3, #starts(c, "a"))
  end)

  it("counts a child that fails to restart toward the intensity, then gives up", function()
    local c = h.collector()
    local flag = "supervisor_spec.no_restart." .. math.random(1 << 30)
    local s = actor.supervisor{ intensity = 3, period = 10, children = {
      child(c, "a", { args = { notify = c, id = "a", fail_if = flag } }) } }
    local w = h.spawn("probe", { monitor = s })
    local a1 = wait_started(c, "a", 1)
    assert.is_true(actor.register(flag))          -- from now on its init fails
    actor.kill(a1, "kill")
    local down = h.wait_inbox(w, function(m) return m.type == "down" and m.from == s end)
    assert.truthy(down, "the supervisor keeps trying")
    assert.equal("shutdown", down.reason)
    assert.equal(1, #starts(c, "a"))
    actor.unregister(flag)
  end)

  it("forgets restarts older than its period", function()
    local c = h.collector()
    local s = sup(c, { intensity = 1, period = 0.05 }, { "a" })
    actor.kill(wait_started(c, "a", 1), "kill")
    local a2 = wait_started(c, "a", 2)
    actor.sleep(0.08)                            -- the first restart leaves the window
    actor.kill(a2, "kill")
    wait_started(c, "a", 3)
    assert.is_true(actor.alive(s))
    actor.kill(s, "kill")
  end)

  it("with link = true it is linked to its starter, which stops it with an exit", function()
    local c = h.collector()
    local p = h.spawn("probe")
    local s = h.eval(p, [[
      local c, script = ...
      return actor.supervisor{ link = true, children = {
        { id = "a", script = script, args = { notify = c, id = "a" } } } }
    ]], c, h.path("service"))
    assert.truthy(s)
    wait_started(c, "a", 1)
    local w = h.spawn("probe", { monitor = s })
    h.eval(p, "actor.exit('shutdown')")
    assert.equal("shutdown", assert(h.wait_inbox(w, function(m) return m.type == "down" end)).reason)
    assert.same({ "shutdown" }, terminations(c, "a"))
  end)

  it("kill(sup, 'kill') takes its children down", function()
    local c = h.collector()
    local s = sup(c, {}, { "a" })
    local a = wait_started(c, "a", 1)
    actor.kill(s, "kill")
    assert.truthy(h.wait_dead(a))
    assert.same({ "killed" }, terminations(c, "a"))
  end)

  it("passes trap_exit to a child", function()
    local c = h.collector()
    local s = actor.supervisor{ children = { child(c, "t", { trap_exit = true }) } }
    local t = wait_started(c, "t", 1)
    actor.kill(t, "shutdown")   -- trapped: a message, no restart
    assert.truthy(h.wait_until(function()
      local inbox = actor.call(t, { op = "state" }).inbox
      return inbox[1] and inbox[1].type == "exit"
    end))
    assert.equal(1, #starts(c, "t"))
    actor.kill(s, "kill")
  end)

  it("kills a child that ignores the stop (it traps exits) after its shutdown time", function()
    local c = h.collector()
    local s = actor.supervisor{ strategy = "one_for_all", children = {
      child(c, "a"),
      child(c, "stubborn", { trap_exit = true, shutdown = 0.05 }),
    } }
    local a1 = wait_started(c, "a", 1)
    wait_started(c, "stubborn", 1)
    local t0 = actor.now()
    actor.kill(a1, "kill")
    wait_started(c, "stubborn", 2)
    assert.same({ "killed" }, terminations(c, "stubborn"))
    assert.is_true(actor.now() - t0 >= 0.04)
    actor.kill(s, "kill")
  end)

  it("returns nil, err when a child cannot start", function()
    local c = h.collector()
    local s, err = actor.supervisor{ children = {
      child(c, "ok"),
      { id = "bad", script = h.path("service"), args = { fail = "child init failed" } } } }
    assert.is_nil(s)
    assert.is_string(err)
    -- the child started before the failing one is stopped again
    assert.truthy(h.wait_until(function() return #terminations(c, "ok") == 1 end))
  end)

  -- BUG (bindings/actor.c, l_supervisor): a spec error raised after a child's
  -- lua_child was tr_malloc'ed (bad restart option, args that cannot travel, a bad
  -- shutdown, a later child without script) leaks that child and the copies made
  -- for the earlier ones (script, lua_path). Invisible here; LeakSanitizer reports it
  -- when this file runs under an ASan build of troupe (make SAN=asan).
  it("raises on a bad spec", function()
    assert.has_error(function() actor.supervisor() end)
    assert.has_error(function() actor.supervisor{} end)
    assert.has_error(function() actor.supervisor{ children = { { id = "x" } } } end)
    assert.has_error(function() actor.supervisor{ children = { { script = h.path("echo") } } } end)
    assert.has_error(function()
      actor.supervisor{ strategy = "one_for_some", children = { { id = "x", script = h.path("echo") } } }
    end)
    assert.has_error(function()
      actor.supervisor{ children = { { id = "x", script = h.path("echo"), restart = "sometimes" } } }
    end)
    assert.has_error(function()
      actor.supervisor{ children = { { id = "x", script = h.path("echo"), args = { f = print } } } }
    end)
  end)
end)
