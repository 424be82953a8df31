-- actor.spawn: scripts and modules, args, state, options, pids.
package.path = debug.getinfo(1, "S").source:match("^@(.-)[^/]*$") .. "?.lua;" .. package.path
local actor = require "troupe.actor"
local h = require "helpers"

describe("actor.spawn", function()
  it("returns a pid that prints as <pid i.g> and is alive", function()
    local pid = h.spawn("echo")
    assert.equal("userdata", type(pid))
    assert.matches("^<pid %d+%.%d+>$", tostring(pid))
    assert.is_true(actor.alive(pid))
  end)

  it("gives each actor its own pid, which is what self() returns inside it", function()
    local a, b = h.spawn("service"), h.spawn("service")
    assert.are_not.equal(a, b)
    assert.equal(a, actor.call(a, { op = "self" }))
    assert.equal(b, actor.call(b, { op = "self" }))
  end)

  it("self() in the spec VM is a live pid", function()
    local me = actor.self()
    assert.matches("^<pid %d+%.%d+>$", tostring(me))
    assert.is_true(actor.alive(me))
  end)

  it("passes args to init and keeps what init returns as the state", function()
    local pid = h.spawn("service", { value = { 1, 2, x = "y" } })
    local st = actor.call(pid, { op = "state" })
    assert.same({ 1, 2, x = "y" }, st.value)
    actor.call(pid, { op = "set", v = "changed" })
    assert.equal("changed", actor.call(pid, { op = "state" }).value)
    assert.equal(4, actor.call(pid, { op = "count" }))  -- four messages so far
  end)

  it("gives a script without init the state {}", function()
    local pid = h.spawn("echo")
    assert.equal("hi", actor.call(pid, "hi"))
  end)

  it("passes nil, a string or a number as args", function()
    assert.is_nil(actor.call(h.spawn("service"), { op = "state" }).value)
    assert.equal("s", actor.call(h.spawn("service", { value = "s" }), { op = "state" }).value)
  end)

  it("runs a script given by a path relative to the cwd", function()
    local rel = h.path("echo")
    assert.truthy(actor.spawn(rel))
  end)

  it("runs a module found on package.path (dots for slashes)", function()
    local pid, err = actor.spawn("actors.echo")
    assert.truthy(pid, err)
    assert.equal(5, actor.call(pid, 5))
  end)

  it("resolves a relative path against the spawning script's directory", function()
    local spawner = h.spawn("spawner")
    -- "echo.lua" is not in the cwd but next to spawner.lua
    local r = actor.call(spawner, { script = "echo.lua" })
    assert.truthy(r.pid, r.err)
    assert.equal("x", actor.call(r.pid, "x"))
  end)

  it("lets an actor spawn actors (from a handler)", function()
    local spawner = h.spawn("spawner")
    local r = actor.call(spawner, { script = "service.lua", args = { value = 7 } })
    assert.truthy(r.pid, r.err)
    assert.equal(7, actor.call(r.pid, { op = "state" }).value)
  end)

  it("spawns many actors quickly, each answering", function()
    local pids = {}
    for i = 1, 200 do pids[i] = h.spawn("service", { value = i }) end
    for i = 1, 200 do assert.equal(i, actor.call(pids[i], { op = "state" }).value) end
    for i = 1, 200 do actor.kill(pids[i], "kill") end
  end)

  it("never hands out a pid again: a stale pid does not reach the actor reusing its slot", function()
    local seen, stale = {}, {}
    for i = 1, 50 do
      local pid = h.spawn("echo")
      assert.is_nil(seen[tostring(pid)], "pid handed out twice: " .. tostring(pid))
      seen[tostring(pid)] = true
      stale[i] = pid
      actor.kill(pid, "kill")
      assert.truthy(h.wait_dead(pid))
    end
    local fresh = h.spawn("echo")
    for _, pid in ipairs(stale) do
      assert.are_not.equal(fresh, pid)
      local ok, err = actor.send(pid, "late")
      assert.is_nil(ok)
      assert.equal("noproc", err)
    end
    assert.equal("ok", actor.call(fresh, "ok"))
  end)

  it("pins an actor to a worker with opts.worker", function()
    local pid = h.spawn("echo", nil, { worker = 0 })
    assert.equal(1, actor.call(pid, 1))
  end)

  it("raises on misuse: bad worker index, bad opts, non-string script", function()
    assert.has_error(function() actor.spawn(h.path("echo"), nil, { worker = 9999 }) end)
    assert.has_error(function() actor.spawn(h.path("echo"), nil, "opts") end)
    assert.has_error(function() actor.spawn(nil) end)
    assert.has_error(function() actor.spawn(h.path("echo"), nil, { memory = "lots" }) end)
  end)

  it("raises when args cannot travel", function()
    local ok, err = pcall(actor.spawn, h.path("echo"), { f = print })
    assert.is_false(ok)
    assert.matches("cannot send a function", err)
  end)

  it("applies opts.max_mailbox: sends beyond it get nil, 'overload'", function()
    local pid = h.spawn("service", nil, { max_mailbox = 2 })
    actor.send(pid, { op = "spin", v = 0.3 })   -- keeps it busy while we fill the mailbox
    local accepted, overloaded = 0, 0
    for i = 1, 20 do
      local ok, err = actor.send(pid, i)
      if ok then accepted = accepted + 1 else
        assert.equal("overload", err)
        overloaded = overloaded + 1
      end
    end
    assert.is_true(overloaded > 0)
    assert.is_true(accepted <= 3)
    local r, err = actor.call(pid, "ping")   -- still full: a call is refused the same way
    assert.is_nil(r)
    assert.equal("overload", err)
    -- it drains and answers again
    assert.truthy(h.wait_until(function() return actor.call(pid, "ping", 2) == "pong" end))
  end)
end)
