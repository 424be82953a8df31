-- actor.after, actor.every, actor.cancel, actor.sleep, actor.now.
package.path = debug.getinfo(1, "S").source:match("^@(.-)[^/]*$") .. "?.lua;" .. package.path
local actor = require "troupe.actor"
local h = require "helpers"

local function count(c, v)
  local n = 0
  for _, m in ipairs(h.messages(c)) do if m == v then n = n + 1 end end
  return n
end

describe("actor.after", function()
  it("delivers the message once, no earlier than the delay, from the setter", function()
    local c = h.collector()
    local t0 = actor.now()
    local id = actor.after(0.05, { tick = 1 }, c)
    assert.equal("integer", math.type(id))
    local got = h.wait_entries(c, 1)
    assert.same({ tick = 1 }, got[1].m)
    assert.equal(actor.self(), got[1].from)
    assert.is_true(got[1].t - t0 >= 0.045, "arrived after " .. (got[1].t - t0))
    actor.after(0.06, "marker", c)
    h.wait_entries(c, nil, 2, function(m) return m == "marker" end)
    assert.equal(2, #h.entries(c))   -- the tick once, then the marker
  end)

  it("sends to the setter itself when no pid is given", function()
    local p = h.spawn("probe")
    h.eval(p, "actor.after(0.01, 'to me')")
    assert.truthy(h.wait_inbox(p, function(m) return m == "to me" end))
  end)

  it("fires timers in the order of their deadlines", function()
    local c = h.collector()
    actor.after(0.06, 3, c)
    actor.after(0.02, 1, c)
    actor.after(0.04, 2, c)
    actor.after(0, 0, c)
    local got = h.wait_entries(c, 4)
    assert.same({ 0, 1, 2, 3 }, { got[1].m, got[2].m, got[3].m, got[4].m })
  end)

  it("cancel stops a timer that has not fired", function()
    local c = h.collector()
    local id = actor.after(0.05, "cancelled", c)
    assert.is_true(actor.cancel(id))
    actor.after(0.1, "marker", c)
    h.wait_entries(c, nil, 2, function(m) return m == "marker" end)
    assert.equal(0, count(c, "cancelled"))
  end)

  it("raises on a negative, infinite or missing delay, and a message that cannot travel", function()
    local c = h.collector()
    assert.has_error(function() actor.after(-1, "x", c) end)
    assert.has_error(function() actor.after(math.huge, "x", c) end)
    assert.has_error(function() actor.after(nil, "x", c) end)
    assert.has_error(function() actor.after(0.1, print, c) end)
    assert.has_error(function() actor.after(0.1, "x", "not a pid") end)
  end)

  it("accepts a dead target: the message is dropped when it fires", function()
    local c = h.collector()
    actor.kill(c, "kill")
    assert.truthy(h.wait_dead(c))
    assert.equal("integer", math.type(actor.after(0, "x", c)))
  end)
end)

describe("actor.every", function()
  it("repeats until cancelled", function()
    local c = h.collector()
    local id = actor.every(0.01, "tick", c)
    h.wait_until(function() return count(c, "tick") >= 3 end)
    assert.is_true(count(c, "tick") >= 3)
    assert.is_true(actor.cancel(id))
    local at_cancel = count(c, "tick")
    actor.after(0.08, "marker", c)
    h.wait_entries(c, nil, 2, function(m) return m == "marker" end)
    -- a tick already on its way when cancel ran may still arrive, not more
    assert.is_true(count(c, "tick") <= at_cancel + 1,
      ("%d ticks at cancel, %d later"):format(at_cancel, count(c, "tick")))
  end)

  it("keeps its period (no drift beyond scheduling noise)", function()
    local c = h.collector()
    local id = actor.every(0.02, "tick", c)
    local got = h.wait_entries(c, 6)
    actor.cancel(id)
    local span = got[6].t - got[1].t   -- 5 periods
    assert.is_true(span >= 0.09 and span < 0.5, "5 periods took " .. span)
  end)

  it("raises on a zero or negative period", function()
    local c = h.collector()
    assert.has_error(function() actor.every(0, "x", c) end)
    assert.has_error(function() actor.every(-0.5, "x", c) end)
  end)

  -- Regression (fixed in 4271d45, runtime/core/timer.c on_timer): a periodic timer
  -- whose target had exited stayed in the heap, waking its worker every period for
  -- the life of the runtime (one leaked timer per actor.every-to-self that exited).
  it("is dropped once its target has exited (cancel then finds nothing)", function()
    local c = h.collector()
    -- set and cancelled by one actor pinned to a worker: cancel answers for sure there
    local setter = h.spawn("probe", nil, { worker = 0 })
    local id = h.eval(setter, "return actor.every(0.01, 'tick', ...)", c)
    h.wait_entries(c, 1)
    actor.kill(c, "kill")
    assert.truthy(h.wait_dead(c))
    local r = h.eval(setter, "actor.sleep(0.05); return table.pack(actor.cancel(...))", id)
    assert.is_nil(r[1], "the timer is still there")
    assert.equal("noproc", r[2])
  end)
end)

describe("actor.cancel", function()
  it("of a timer that already fired or was cancelled returns nil, 'noproc'", function()
    local c = h.collector()
    local id = actor.after(0, "x", c)
    h.wait_entries(c, 1)
    local ok, err = actor.cancel(id)
    assert.is_nil(ok)
    assert.equal("noproc", err)
  end)

  it("raises on a non-integer", function()
    assert.has_error(function() actor.cancel("x") end)
  end)
end)

describe("actor.sleep and actor.now", function()
  it("now() is a monotonic float in seconds", function()
    local a = actor.now()
    local b = actor.now()
    assert.equal("float", math.type(a))
    assert.is_true(b >= a)
  end)

  it("sleep(sec) waits at least sec", function()
    local dt = h.timed(actor.sleep, 0.05)
    assert.is_true(dt >= 0.045 and dt < 0.5, "slept " .. dt)
  end)

  it("sleep(0) and sleep() return at once", function()
    local dt = h.timed(function() actor.sleep(0); actor.sleep() end)
    assert.is_true(dt < 0.5)
  end)

  it("sleep raises on a negative or infinite delay", function()
    assert.has_error(function() actor.sleep(-1) end)
    assert.has_error(function() actor.sleep(math.huge) end)
  end)

  it("a sleeping handler does not block its actor's other messages", function()
    local pid = h.spawn("service")
    actor.send(pid, { op = "sleep", v = 0.5 })
    local dt, r = h.timed(actor.call, pid, "ping")
    assert.equal("pong", r[1])
    assert.is_true(dt < 0.4, "ping took " .. dt)
  end)

  it("many actors sleep at once without holding the workers", function()
    local c = h.collector()
    local t0 = actor.now()
    for i = 1, 50 do
      actor.send(h.spawn("probe"), { op = "eval", code = "actor.sleep(0.1); actor.send(..., 'woke')",
                                     args = { c, n = 1 } })
    end
    h.wait_entries(c, 50, 3)
    local dt = actor.now() - t0
    assert.is_true(dt < 1, "took " .. dt)
  end)
end)

describe("actor.cancel across workers", function()
  -- BUG (runtime/core/timer.c, tr_timer_cancel): from a thread other than the timer's
  -- worker, cancel is queued as a command and returns 0 at once, so actor.cancel
  -- answers true for a timer that already fired (or never existed), while from the
  -- timer's own worker it answers nil, "noproc". troupe.h promises TR_ENOPROC for
  -- "unknown or finished" timers either way.
  -- KNOWN LIMITATION, open: cross-worker cancels are asynchronous (see above).
  pending("answers nil, 'noproc' for a fired timer whichever worker cancels it", function()
    local c = h.collector()
    local setter = h.spawn("probe", nil, { worker = 0 })
    local ok, canceller = pcall(actor.spawn, h.path("probe"), nil, { worker = 1 })
    if not ok then return pending("needs two workers") end
    local id = h.eval(setter, "return actor.after(0, 'x', ...)", c)
    h.wait_entries(c, 1)
    local r = h.eval(canceller, "return table.pack(actor.cancel(...))", id)
    assert.is_nil(r[1])
    assert.equal("noproc", r[2])
  end)
end)
