-- Links, monitors, trap_exit, kill, exit, terminate. The spec VM itself never links
-- (it cannot trap): probe actors (actors/probe.lua) link, trap and record notices.
package.path = debug.getinfo(1, "S").source:match("^@(.-)[^/]*$") .. "?.lua;" .. package.path
local actor = require "troupe.actor"
local h = require "helpers"

local function exit_from(pid)
  return function(m) return type(m) == "table" and m.type == "exit" and m.from == pid end
end
local function down_of(pid)
  return function(m) return type(m) == "table" and m.type == "down" and m.from == pid end
end

-- A monitor held by a probe: returns a function that waits for pid's DOWN notice.
local function watch(pid)
  local w = h.spawn("probe", { monitor = pid })
  return function(timeout) return h.wait_inbox(w, down_of(pid), timeout) end
end

describe("links", function()
  it("an abnormal exit kills a linked actor that does not trap", function()
    local victim = h.spawn("service")
    local linked = h.spawn("probe", { link = victim })
    local down = watch(linked)
    actor.send(victim, { op = "exit", v = "error" })
    local d = down()
    assert.truthy(d, "the linked actor did not exit")
    assert.equal("error", d.reason)
    assert.is_false(actor.alive(linked))
  end)

  it("links go both ways", function()
    local a = h.spawn("service")
    local b = h.spawn("probe", { link = a })
    local down = watch(a)
    assert.equal("x", h.eval(b, "actor.exit('shutdown') return 'x'"))
    assert.equal("shutdown", assert(down()).reason)
  end)

  it("a normal exit does not kill linked actors", function()
    local victim = h.spawn("service")
    local linked = h.spawn("probe", { link = victim })
    local down = watch(victim)
    actor.send(victim, { op = "exit", v = "normal" })
    assert.equal("normal", assert(down()).reason)
    assert.equal(1, h.eval(linked, "return 1"))
    assert.is_true(actor.alive(linked))
  end)

  it("a trapping actor gets {type='exit', from=, reason=} and lives on", function()
    local victim = h.spawn("service")
    local trapper = h.spawn("probe", { trap = true, link = victim })
    actor.send(victim, { op = "exit", v = "error" })
    local m = h.wait_inbox(trapper, exit_from(victim))
    assert.truthy(m, "no exit notice")
    assert.same({ type = "exit", from = victim, reason = "error" }, m)
    assert.is_true(actor.alive(trapper))
  end)

  it("a trapping actor also sees normal exits of its links", function()
    local victim = h.spawn("service")
    local trapper = h.spawn("probe", { trap = true, link = victim })
    actor.send(victim, { op = "exit", v = "normal" })
    assert.equal("normal", assert(h.wait_inbox(trapper, exit_from(victim))).reason)
  end)

  it("opts.link links the new actor to its spawner", function()
    local parent = h.spawn("probe")
    local child = h.eval(parent, "return actor.spawn(..., nil, { link = true })", h.path("service"))
    assert.truthy(child)
    local down = watch(parent)
    actor.send(child, { op = "exit", v = "error" })
    assert.equal("error", assert(down()).reason)
  end)

  it("opts.trap_exit starts the actor trapping", function()
    local pid = h.spawn("service", nil, { trap_exit = true })
    actor.kill(pid, "shutdown")
    assert.truthy(h.wait_until(function()
      local inbox = actor.call(pid, { op = "state" }).inbox
      return inbox[1] and inbox[1].type == "exit"
    end))
    local m = actor.call(pid, { op = "state" }).inbox[1]
    assert.same({ type = "exit", from = actor.self(), reason = "shutdown" }, m)
  end)

  it("trap_exit(false) stops trapping", function()
    local victim = h.spawn("service")
    local p = h.spawn("probe", { trap = true, link = victim })
    h.eval(p, "actor.trap_exit(false)")
    local down = watch(p)
    actor.send(victim, { op = "exit", v = "error" })
    assert.equal("error", assert(down()).reason)
  end)

  it("unlink removes the link (both ways)", function()
    local victim = h.spawn("service")
    local p = h.spawn("probe", { link = victim })
    assert.is_true(h.eval(p, "return actor.unlink(...)", victim))
    local down = watch(victim)
    actor.send(victim, { op = "exit", v = "error" })
    assert.truthy(down())
    assert.equal(1, h.eval(p, "return 1"))
  end)

  it("linking a dead pid gives an exit notice with reason 'noproc'", function()
    local dead = h.spawn("service")
    actor.kill(dead, "kill")
    assert.truthy(h.wait_dead(dead))
    local p = h.spawn("probe", { trap = true })
    h.eval(p, "return actor.link(...)", dead)
    local m = h.wait_inbox(p, exit_from(dead))
    assert.truthy(m, "no exit notice for a dead link")
    assert.equal("noproc", m.reason)
  end)

  it("an error in a handler does not exit the actor nor signal its links", function()
    local victim = h.spawn("service")
    local trapper = h.spawn("probe", { trap = true, link = victim })
    assert.is_nil(actor.call(victim, { op = "error", v = "oops" }))
    assert.equal("pong", actor.call(victim, "ping"))
    assert.same({}, h.inbox(trapper))
  end)

  it("raises on misuse", function()
    assert.has_error(function() actor.link("x") end)
    assert.has_error(function() actor.unlink(nil) end)
  end)
end)

describe("kill", function()
  it("kill(pid, 'kill') cannot be trapped; links see 'killed'", function()
    local victim = h.spawn("service", { trap = true })
    local trapper = h.spawn("probe", { trap = true, link = victim })
    assert.is_true(actor.kill(victim, "kill"))
    local m = h.wait_inbox(trapper, exit_from(victim))
    assert.truthy(m)
    assert.equal("killed", m.reason)
    assert.is_false(actor.alive(victim))
  end)

  it("kill(pid, 'shutdown') stops an actor that does not trap", function()
    local victim = h.spawn("service")
    local down = watch(victim)
    actor.kill(victim, "shutdown")
    assert.equal("shutdown", assert(down()).reason)
  end)

  it("a trapping actor gets a kill with another reason as a message from the killer", function()
    local victim = h.spawn("probe", { trap = true })
    actor.kill(victim, "shutdown")
    local m = h.wait_inbox(victim, function(m) return m.type == "exit" end)
    assert.same({ type = "exit", from = actor.self(), reason = "shutdown" }, m)
    assert.is_true(actor.alive(victim))
  end)

  it("kill(pid, 'normal') is ignored by an actor that does not trap", function()
    local victim = h.spawn("service")
    assert.is_true(actor.kill(victim, "normal"))
    assert.equal("pong", actor.call(victim, "ping"))
  end)

  it("kill of a dead pid returns nil, 'noproc'", function()
    local victim = h.spawn("service")
    actor.kill(victim, "kill")
    assert.truthy(h.wait_dead(victim))
    local ok, err = actor.kill(victim, "kill")
    assert.is_nil(ok)
    assert.equal("noproc", err)
  end)
end)

describe("monitors", function()
  it("monitor returns a ref; one {type='down', from=, reason=, ref=} arrives", function()
    local victim = h.spawn("service")
    local w = h.spawn("probe")
    local ref = h.eval(w, "return actor.monitor(...)", victim)
    assert.equal("integer", math.type(ref))
    actor.send(victim, { op = "exit", v = "shutdown" })
    local m = h.wait_inbox(w, down_of(victim))
    assert.same({ type = "down", from = victim, reason = "shutdown", ref = ref }, m)
    assert.equal("done", h.eval(w, "return 'done'"))  -- a round trip later
    local n = 0
    for _, x in ipairs(h.inbox(w)) do if x.type == "down" then n = n + 1 end end
    assert.equal(1, n)
  end)

  it("a monitor does not kill the watcher, even on an abnormal exit", function()
    local victim = h.spawn("service")
    local w = h.spawn("probe", { monitor = victim })
    actor.kill(victim, "kill")
    assert.equal("killed", assert(h.wait_inbox(w, down_of(victim))).reason)
    assert.is_true(actor.alive(w))
  end)

  it("demonitor: no down arrives for that ref", function()
    local victim = h.spawn("service")
    local w = h.spawn("probe")
    local r1 = h.eval(w, "return actor.monitor(...)", victim)
    local r2 = h.eval(w, "return actor.monitor(...)", victim)
    assert.are_not.equal(r1, r2)
    assert.is_true(h.eval(w, "return actor.demonitor(...)", r1))
    actor.kill(victim, "kill")
    assert.truthy(h.wait_inbox(w, function(m) return m.type == "down" and m.ref == r2 end))
    for _, m in ipairs(h.inbox(w)) do assert.are_not.equal(r1, m.ref) end
  end)

  it("monitoring a dead pid gives a down with reason 'noproc'", function()
    local dead = h.spawn("service")
    actor.kill(dead, "kill")
    assert.truthy(h.wait_dead(dead))
    local w = h.spawn("probe", { monitor = dead })
    assert.equal("noproc", assert(h.wait_inbox(w, down_of(dead))).reason)
  end)

  it("raises on misuse", function()
    assert.has_error(function() actor.monitor("x") end)
    assert.has_error(function() actor.demonitor("x") end)
  end)
end)

describe("exit and terminate", function()
  it("exit(reason) takes effect when the handler returns; its answer still goes out", function()
    local victim = h.spawn("service")
    local down = watch(victim)
    assert.equal("bye", actor.call(victim, { op = "exit", v = "shutdown", reply = "bye" }))
    assert.equal("shutdown", assert(down()).reason)
    assert.is_false(actor.alive(victim))
  end)

  it("exit() with no reason is a normal exit", function()
    local victim = h.spawn("probe")
    local down = watch(victim)
    h.eval(victim, "actor.exit()")
    assert.equal("normal", assert(down()).reason)
  end)

  it("exit(reason) in init: spawn gives a pid, the actor exits right after init", function()
    local pid = assert(actor.spawn(h.path("exit_in_init"), "shutdown"))
    assert.truthy(h.wait_dead(pid, 0.5), "still alive after init asked to exit")
    local r, err = actor.call(pid, "x", 0.5)
    assert.is_nil(r)
    assert.is_true(err == "noproc" or err == "exited")
  end)

  it("terminate(state, reason) runs with the exit reason", function()
    local c = h.collector()
    local cases = { { "normal", "normal" }, { "shutdown", "shutdown" }, { "kill", "killed" } }
    for _, case in ipairs(cases) do
      local victim = h.spawn("service", { notify = c, id = case[1] })
      if case[1] == "normal" then
        actor.send(victim, { op = "exit", v = "normal" })
      else
        actor.kill(victim, case[1])
      end
    end
    for _, case in ipairs(cases) do
      local got = h.wait_entries(c, nil, 2, function(m) return m.terminated and m.id == case[1] end)
      for _, e in ipairs(got) do
        if e.m.terminated and e.m.id == case[1] then assert.equal(case[2], e.m.reason) end
      end
    end
  end)

  it("an error in terminate is logged and the actor still exits", function()
    local victim = h.spawn("bad_terminate")
    local down = watch(victim)
    assert.equal("ok", actor.call(victim, "stop"))
    assert.equal("normal", assert(down()).reason)
  end)
end)
