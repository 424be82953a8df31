-- actor.register, actor.unregister, actor.whereis.
package.path = debug.getinfo(1, "S").source:match("^@(.-)[^/]*$") .. "?.lua;" .. package.path
local actor = require "troupe.actor"
local h = require "helpers"

local n = 0
local function name()   -- a fresh name per test: the registry is runtime-wide
  n = n + 1
  return ("registry_spec.%d.%d"):format(n, math.random(1 << 30))
end

describe("the name registry", function()
  it("register(name, pid) then whereis(name) gives the pid", function()
    local pid, nm = h.spawn("echo"), name()
    assert.is_true(actor.register(nm, pid))
    assert.equal(pid, actor.whereis(nm))
    assert.equal("hi", actor.call(actor.whereis(nm), "hi"))
  end)

  it("register(name) registers the caller", function()
    local nm = name()
    assert.is_true(actor.register(nm))
    assert.equal(actor.self(), actor.whereis(nm))
    assert.is_true(actor.unregister(nm))
  end)

  it("an actor can register itself from init", function()
    local nm = name()
    local pid = h.spawn("service", { register = nm })
    assert.equal(pid, actor.whereis(nm))
  end)

  it("whereis of an unknown name is nil", function()
    assert.is_nil(actor.whereis(name()))
  end)

  it("a taken name gives nil, 'exists'", function()
    local nm = name()
    local a, b = h.spawn("echo"), h.spawn("echo")
    assert.is_true(actor.register(nm, a))
    local ok, err = actor.register(nm, b)
    assert.is_nil(ok)
    assert.equal("exists", err)
    assert.equal(a, actor.whereis(nm))
  end)

  it("one actor may hold several names", function()
    local pid, n1, n2 = h.spawn("echo"), name(), name()
    assert.is_true(actor.register(n1, pid))
    assert.is_true(actor.register(n2, pid))
    assert.equal(pid, actor.whereis(n1))
    assert.equal(pid, actor.whereis(n2))
  end)

  it("unregister releases the name (true), and false when it was not registered", function()
    local pid, nm = h.spawn("echo"), name()
    actor.register(nm, pid)
    assert.is_true(actor.unregister(nm))
    assert.is_nil(actor.whereis(nm))
    assert.is_false(actor.unregister(nm))
    assert.is_true(actor.register(nm, h.spawn("echo")))
  end)

  it("releases the names of an actor when it exits", function()
    local pid, nm = h.spawn("service"), name()
    actor.register(nm, pid)
    actor.kill(pid, "kill")
    assert.truthy(h.wait_until(function() return actor.whereis(nm) == nil end))
    local other = h.spawn("echo")
    assert.is_true(actor.register(nm, other))
    assert.equal(other, actor.whereis(nm))
  end)

  it("register of a dead pid gives nil, 'noproc'", function()
    local pid = h.spawn("service")
    actor.kill(pid, "kill")
    assert.truthy(h.wait_dead(pid))
    local ok, err = actor.register(name(), pid)
    assert.is_nil(ok)
    assert.equal("noproc", err)
  end)

  it("names are shared by every actor of the runtime", function()
    local nm = name()
    local pid = h.spawn("echo")
    actor.register(nm, pid)
    local p = h.spawn("probe")
    assert.equal(pid, h.eval(p, "return actor.whereis(...)", nm))
  end)

  it("raises on an empty name, one over 255 bytes, or a non-string", function()
    local pid = h.spawn("echo")
    assert.has_error(function() actor.register("", pid) end)
    assert.has_error(function() actor.register(("x"):rep(256), pid) end)
    assert.has_error(function() actor.register({}, pid) end)
    assert.has_error(function() actor.register("ok", "not a pid") end)
    assert.has_error(function() actor.whereis(nil) end)
    local nm = ("y"):rep(255) .. math.random(9)
    nm = nm:sub(1, 255)
    assert.is_true(actor.register(nm, pid))
    assert.equal(pid, actor.whereis(nm))
  end)
end)
