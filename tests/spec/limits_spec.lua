-- Memory cap per VM and CPU budget per message: the message fails, the actor lives.
package.path = debug.getinfo(1, "S").source:match("^@(.-)[^/]*$") .. "?.lua;" .. package.path
local actor = require "troupe.actor"
local h = require "helpers"

local MB = 1024 * 1024

describe("the memory cap (opts.memory)", function()
  it("fails the handler that goes past it with a memory error; the actor answers later calls", function()
    local pid = h.spawn("service", nil, { memory = 2 * MB })
    local r, err = actor.call(pid, { op = "alloc", v = 100000 })   -- ~10 MB of strings
    assert.is_nil(r)
    assert.matches("memory", err)
    assert.equal("pong", actor.call(pid, "ping"))
    assert.equal(1000, actor.call(pid, { op = "alloc", v = 1000 }))  -- small ones still work
  end)

  it("counts what the actor keeps: it can fill up, then recover when it lets go", function()
    local pid = h.spawn("service", nil, { memory = 2 * MB })
    assert.equal(10000, actor.call(pid, { op = "alloc", v = 10000, keep = true }))  -- ~1 MB kept
    local r, err = actor.call(pid, { op = "alloc", v = 10000 })      -- another MB: too much
    assert.is_nil(r)
    assert.matches("memory", err)
    assert.is_true(actor.call(pid, { op = "free" }))
    assert.equal(10000, actor.call(pid, { op = "alloc", v = 10000 }))
  end)

  it("stays within the cap", function()
    local pid = h.spawn("service", nil, { memory = 2 * MB })
    actor.call(pid, { op = "alloc", v = 100000 })
    local used = actor.call(pid, { op = "mem" })
    assert.is_true(used <= 2 * MB, "uses " .. tostring(used))
  end)

  it("a huge single allocation fails cleanly too", function()
    local pid = h.spawn("probe", nil, { memory = 2 * MB })
    local r, err = h.eval(pid, "return #string.rep('x', 1 << 30)")
    assert.is_nil(r)
    assert.matches("memory", err)
    assert.equal(2, h.eval(pid, "return 1 + 1"))
  end)

  it("does not touch other actors", function()
    local small = h.spawn("service", nil, { memory = 2 * MB })
    local big = h.spawn("service")
    assert.is_nil(actor.call(small, { op = "alloc", v = 100000 }))
    assert.equal(100000, actor.call(big, { op = "alloc", v = 100000 }))
  end)

  -- Regression (fixed in 4271d45, runtime/lua/lactor.c lua_receive): the caller used
  -- to get "bad message", the reason ("out of memory") only went to the log.
  it("a message too big for the receiver's cap fails that message only, saying why", function()
    local pid = h.spawn("echo", nil, { memory = 2 * MB })
    local r, err = actor.call(pid, ("x"):rep(4 * MB))
    assert.is_nil(r)
    assert.equal("small", actor.call(pid, "small"))
    assert.matches("memory", err)
  end)

  -- BUG (bindings/actor.c, vm_opts): opts.memory is cast to size_t unchecked: a
  -- negative cap becomes (size_t)-1, i.e. no cap at all; misuse should raise.
  it("raises on a negative cap", function()
    assert.has_error(function() actor.spawn(h.path("echo"), nil, { memory = -1 }) end)
  end)

  it("is inherited by the actors an actor spawns", function()
    local parent = h.spawn("probe", nil, { memory = 2 * MB })
    local child = h.eval(parent, "return actor.spawn(...)", h.path("service"))
    assert.truthy(child)
    local r, err = actor.call(child, { op = "alloc", v = 100000 })
    assert.is_nil(r)
    assert.matches("memory", err)
  end)

  it("spawn fails with nil, err when init goes past the cap", function()
    local pid, err = actor.spawn(h.path("init_limits"), "alloc", { memory = 2 * MB })
    assert.is_nil(pid)
    assert.matches("memory", err)
  end)

  it("spawn fails with nil, err when the cap is too small for a VM at all", function()
    local pid, err = actor.spawn(h.path("echo"), nil, { memory = 1000 })
    assert.is_nil(pid)
    assert.matches("memory", err)
  end)
end)

describe("the CPU budget (opts.budget)", function()
  local function budget_exceeded(op)
    local pid = h.spawn("service", nil, { budget = 0.2 })
    local dt, r = h.timed(actor.call, pid, { op = op }, 5)
    assert.is_nil(r[1])
    assert.matches("CPU budget exceeded", r[2])
    assert.is_true(dt >= 0.15 and dt < 1.5, op .. " stopped after " .. dt)
    assert.equal("pong", actor.call(pid, "ping"))
    return pid
  end

  it("stops a handler looping forever", function()
    budget_exceeded("loop")
  end)

  it("cannot be swallowed by a pcall in the script", function()
    budget_exceeded("pcall_loop")
  end)

  it("cannot be outrun with coroutines", function()
    budget_exceeded("coroutine_loop")
  end)

  it("cannot be outrun with coroutine.wrap under a pcall", function()
    local pid = h.spawn("probe", nil, { budget = 0.2 })
    local dt, r = h.timed(h.eval, pid, [[
      while true do pcall(coroutine.wrap(function() while true do end end)) end
    ]])
    assert.is_nil(r[1])
    assert.matches("CPU budget exceeded", r[2])
    assert.is_true(dt >= 0.15 and dt < 1.5, "stopped after " .. dt)
  end)

  it("leaves a coroutine the state keeps working after a turn that ran out", function()
    local pid = h.spawn("probe", nil, { budget = 0.2 })
    assert.equal(1, h.eval(pid, [[
      state.gen = coroutine.wrap(function()
        local i = 0
        while true do i = i + 1; coroutine.yield(i) end
      end)
      return state.gen()
    ]]))
    local _, r = h.timed(h.eval, pid, "state.gen(); while true do end")
    assert.matches("CPU budget exceeded", r[2])
    assert.equal(3, h.eval(pid, "return state.gen()"))
  end)

  -- The next three escape the budget. Their runaway part is bounded (about 1 s) so
  -- that they fail instead of hanging the suite; unbounded, each holds a worker
  -- thread forever (and `troupe` then never exits).
  local function escapes(code)
    local pid = h.spawn("probe", nil, { budget = 0.2 })
    local dt, r = h.timed(h.eval, pid, code)
    assert.is_nil(r[1], "the runaway code ran to its end after " .. dt .. " s")
    assert.matches("CPU budget exceeded", r[2])
    assert.is_true(dt < 0.6, "stopped after " .. dt .. " s (budget 0.2 s)")
  end

  -- Regression (fixed in 4271d45, runtime/lua/vm.c safe_xpcall): the budget error is
  -- raised from inside the count hook, where Lua runs with hooks off
  -- (L->allowhook = 0), and luaG_errormsg calls an xpcall message handler right
  -- there: xpcall(loop, function() while true do end end) never returned.
  it("cannot be outrun with an xpcall message handler", function()
    escapes([[
      xpcall(function() while true do end end, function(e)
        local t = actor.now()
        while actor.now() - t < 1 do end    -- runs with the hook off
        return e
      end)
      return "xpcall returned"
    ]])
  end)

  -- Lua runs __gc metamethods with hooks disabled (GCTM sets allowhook = 0), so a
  -- finalizer could never be metered: the sandbox refuses __gc outright.
  it("cannot be outrun with a __gc finalizer: the sandbox refuses __gc", function()
    local pid = h.spawn("probe", nil, { budget = 0.2 })
    local r = h.eval(pid, [[
      local ok, err = pcall(setmetatable, {}, { __gc = function()
        local t = actor.now()
        while actor.now() - t < 1 do end
      end })
      collectgarbage()
      return { ok = ok, err = err }
    ]])
    assert.is_false(r.ok)
    assert.matches("__gc metamethods are not available", r.err)
  end)

  -- KNOWN LIMITATION, open (runtime/lua/vm.c): a count hook never fires inside a C
  -- function; string.find/match/gmatch/gsub with a backtracking pattern run for as
  -- long as they like (2^n steps here: n = 25 takes ~17 s and holds the worker).
  pending("cannot be outrun with a backtracking string pattern", function()
    escapes([[
      local n = 22
      local s = string.rep("a", n)
      return s:find(string.rep("a?", n) .. string.rep("a", n) .. "b") or "no match"
    ]])
  end)

  it("is per message: each runaway message fails on its own", function()
    local pid = budget_exceeded("loop")
    local r, err = actor.call(pid, { op = "pcall_loop" }, 5)
    assert.is_nil(r)
    assert.matches("CPU budget exceeded", err)
    assert.equal("spun", actor.call(pid, { op = "spin", v = 0.1 }))   -- under the budget
  end)

  it("does not count time spent waiting", function()
    local pid = h.spawn("service", nil, { budget = 0.1 })
    assert.equal("slept", actor.call(pid, { op = "sleep", v = 0.25 }))
  end)

  it("applies to a message sent (not called) too; the actor goes on", function()
    local pid = h.spawn("service", nil, { budget = 0.1 })
    actor.send(pid, { op = "loop" })
    assert.equal("pong", actor.call(pid, "ping", 3))
  end)

  it("applies to init: spawn returns nil, err", function()
    local dt, r = h.timed(actor.spawn, h.path("init_limits"), "loop", { budget = 0.2 })
    assert.is_nil(r[1])
    assert.matches("CPU budget exceeded", r[2])
    assert.is_true(dt < 1.5)
  end)

  it("is inherited by the actors an actor spawns", function()
    local parent = h.spawn("probe", nil, { budget = 0.2 })
    local child = h.eval(parent, "return actor.spawn(...)", h.path("service"))
    local dt, r = h.timed(actor.call, child, { op = "loop" }, 5)
    assert.is_nil(r[1])
    assert.matches("CPU budget exceeded", r[2])
    assert.is_true(dt < 0.6, "stopped after " .. dt)
  end)

  -- BUG (bindings/actor.c, vm_opts): opts.budget is not checked: it is cast with
  -- (uint64_t)(seconds * 1000), which is undefined behaviour for a negative, NaN or
  -- infinite number (on x86 -1 wraps to a budget that overflows budget_ms * 1e6 in
  -- tr_lvm_init: some arbitrary limit); misuse should raise.
  it("raises on a budget that is not a positive finite number of seconds", function()
    for _, b in ipairs({ -1, 0 / 0, math.huge, -math.huge }) do
      assert.has_error(function() actor.spawn(h.path("echo"), nil, { budget = b }) end,
        nil, "budget = " .. tostring(b))
    end
  end)

  -- BUG (bindings/actor.c, vm_opts + runtime/lua/vm.c, tr_lvm_init): a budget under
  -- 1 ms truncates to 0 ms, which tr_lvm_init reads as "the default": 0.0005 s
  -- becomes 1 s.
  it("a budget under a millisecond is not taken as the 1 s default", function()
    local pid = h.spawn("service", nil, { budget = 0.0005 })
    local dt, r = h.timed(actor.call, pid, { op = "loop" }, 3)
    assert.matches("CPU budget exceeded", r[2])
    assert.is_true(dt < 0.5, "stopped after " .. dt .. " s")
  end)

  it("defaults to 1 s per message", function()
    local pid = h.spawn("service")
    assert.equal("spun", actor.call(pid, { op = "spin", v = 0.5 }))
  end)
end)

-- budget.c replaces coroutine.resume and coroutine.wrap (to know which coroutine runs
-- when the budget runs out): what scripts see must stay Lua's own.
describe("coroutine.resume and coroutine.wrap", function()
  local CHECK = [[
    local out = {}
    local ok, e = pcall(coroutine.wrap(function() error("boom") end))
    out.wrap_error = e
    local f = coroutine.wrap(function() return 1 end)
    f()
    out.dead = select(2, pcall(f))
    out.table_error = type(select(2, pcall(coroutine.wrap(function() error({}) end))))
    out.bad_resume = select(2, pcall(coroutine.resume, 1))
    out.bad_wrap = select(2, pcall(coroutine.wrap, 1))
    out.values = { coroutine.resume(coroutine.create(function(...) return ... end), 1, 2, 3) }
    out.resume_error = { coroutine.resume(coroutine.create(function() error("x", 0) end)) }
    local co = coroutine.wrap(function(a) local b = coroutine.yield(a + 1); return b * 2 end)
    out.yields = { co(1), co(10) }
    local inner = coroutine.wrap(function() return coroutine.isyieldable(), coroutine.running() end)
    out.inner = { inner() }
    out.inner[2] = type(out.inner[2])
    local closed = false
    local c = coroutine.wrap(function()
      local _ <close> = setmetatable({}, { __close = function() closed = true end })
      error("with a to-be-closed variable", 0)
    end)
    out.close_error = select(2, pcall(c))
    out.closed = closed
    return out
  ]]

  local function check(out)
    assert.matches(":%d+: boom$", out.wrap_error)
    assert.equal("cannot resume dead coroutine", out.dead)
    assert.equal("table", out.table_error)
    assert.equal("bad argument #1 to 'coroutine.resume' (thread expected, got number)",
                 out.bad_resume)
    assert.equal("bad argument #1 to 'coroutine.wrap' (function expected, got number)",
                 out.bad_wrap)
    assert.same({ true, 1, 2, 3 }, out.values)
    assert.same({ false, "x" }, out.resume_error)
    assert.same({ 2, 20 }, out.yields)
    assert.same({ true, "thread", false }, out.inner)
    assert.equal("with a to-be-closed variable", out.close_error)
    assert.is_true(out.closed)
  end

  it("behave as Lua's own in a script", function()
    check(assert(load(CHECK))())
  end)

  it("behave as Lua's own in an actor (the sandbox opens coroutine lazily)", function()
    local pid = h.spawn("probe", nil, { budget = 1 })
    check(assert(h.eval(pid, CHECK)))
  end)
end)
