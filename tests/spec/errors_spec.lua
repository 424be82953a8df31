-- Errors: in handlers (that message fails, the actor goes on), in init and in the
-- script itself (spawn returns nil, err), and what a caller sees.
package.path = debug.getinfo(1, "S").source:match("^@(.-)[^/]*$") .. "?.lua;" .. package.path
local actor = require "troupe.actor"
local h = require "helpers"

describe("an error in a handler", function()
  it("fails that call with nil, the message; the actor goes on", function()
    local pid = h.spawn("service")
    local r, err = actor.call(pid, { op = "error", v = "boom" })
    assert.is_nil(r)
    assert.matches("service%.lua:%d+: boom", err)
    assert.is_true(actor.alive(pid))
    assert.equal("pong", actor.call(pid, "ping"))
  end)

  it("keeps the state as the handler left it", function()
    local pid = h.spawn("service")
    actor.call(pid, { op = "set", v = "before" })
    actor.call(pid, { op = "error", v = "boom" })
    assert.equal("before", actor.call(pid, { op = "state" }).value)
  end)

  it("passes error(msg, 0) through without a position", function()
    local pid = h.spawn("service")
    local r, err = actor.call(pid, { op = "error", v = "exactly this", level = 0 })
    assert.is_nil(r)
    assert.equal("exactly this", err)
  end)

  it("gives the caller a string even for a non-string error value", function()
    local pid = h.spawn("service")
    local r, err = actor.call(pid, { op = "error_table" })
    assert.is_nil(r)
    assert.is_string(err)
    assert.equal("pong", actor.call(pid, "ping"))
  end)

  it("in a message that was sent, not called, is only logged", function()
    local pid = h.spawn("service")
    for _ = 1, 10 do actor.send(pid, { op = "error", v = "nobody listens" }) end
    assert.equal("pong", actor.call(pid, "ping"))
    assert.equal(11, actor.call(pid, { op = "count" }) - 1)
  end)

  it("does not disturb another message of the same actor that is waiting", function()
    local pid = h.spawn("service")
    local c = h.collector()
    local waiter = h.spawn("probe")
    actor.send(waiter, { op = "eval", code = [[
      local pid, c = ...
      actor.send(c, { actor.call(pid, { op = "sleep", v = 0.1 }) })
    ]], args = { pid, c, n = 2 } })
    h.wait_until(function() return actor.call(pid, { op = "count" }) >= 2 end)
    assert.is_nil(actor.call(pid, { op = "error", v = "meanwhile" }))
    assert.same({ "slept" }, h.wait_entries(c, 1)[1].m)
  end)

  it("many failures in a row leave the actor usable", function()
    local pid = h.spawn("service")
    for i = 1, 30 do
      assert.is_nil(actor.call(pid, { op = "error", v = "n" .. i }))
    end
    assert.equal("pong", actor.call(pid, "ping"))
  end)

  it("an actor without handle answers calls with nil, 'no handler'", function()
    local pid = h.spawn("no_handler")
    local r, err = actor.call(pid, "anything")
    assert.is_nil(r)
    assert.equal("no handler", err)
    assert.is_true(actor.send(pid, "ignored"))
  end)

  it("coroutine.yield in a handler returns at once (it cannot suspend the message)", function()
    local pid = h.spawn("probe")
    assert.equal("after", h.eval(pid, "coroutine.yield('x'); return 'after'"))
  end)

  -- Regression (fixed in 4271d45, runtime/lua/lactor.c tr_lactor_wait): a wait in a
  -- coroutine the script created used to yield to the script's own resume (the call
  -- "returned" nothing) and the reply then resumed that coroutine as if it were a job
  -- (results lost, "internal error" logged). It now raises "cannot wait".
  it("a call from inside a coroutine of the script works or raises clearly", function()
    local pid, echo = h.spawn("probe"), h.spawn("echo")
    local r = h.eval(pid, [[
      local echo = ...
      local ok, a, b = pcall(coroutine.wrap(function() return "got", actor.call(echo, "hello") end))
      return { ok = ok, a = a, b = b }
    ]], echo)
    if r.ok then
      assert.same({ ok = true, a = "got", b = "hello" }, r)
    else
      assert.matches("cannot wait", r.a)
    end
    assert.equal("pong", actor.call(h.spawn("service"), "ping"))
  end)
end)

describe("spawn failures return nil, err", function()
  it("an error in init, with its message", function()
    local pid, err = actor.spawn(h.path("bad_init"))
    assert.is_nil(pid)
    assert.matches("init exploded", err)
    assert.matches("bad_init%.lua:%d+:", err)
  end)

  -- Regression (fixed in 4271d45, runtime/lua/lactor.c lua_init): spawn's err used to
  -- carry the message handler's traceback, unlike a failed call's error.
  it("an error in init comes without the traceback, like a failed call's", function()
    local pid, err = actor.spawn(h.path("bad_init"))
    assert.is_nil(pid)
    assert.not_matches("stack traceback", err)
  end)

  it("an error raised with error(msg, 0) in init", function()
    local pid, err = actor.spawn(h.path("service"), { fail = "plain message" })
    assert.is_nil(pid)
    assert.matches("plain message", err)
  end)

  it("a script that returns something else than a table", function()
    local pid, err = actor.spawn(h.path("not_a_table"))
    assert.is_nil(pid)
    assert.matches("must return a table %(got number%)", err)
    pid, err = actor.spawn(h.path("nothing_returned"))
    assert.is_nil(pid)
    assert.matches("must return a table %(got nil%)", err)
  end)

  it("a syntax error", function()
    local pid, err = actor.spawn(h.path("syntax_error"))
    assert.is_nil(pid)
    assert.matches("syntax_error%.lua:%d+:", err)
  end)

  it("a missing file", function()
    local pid, err = actor.spawn(h.path("does_not_exist"))
    assert.is_nil(pid)
    assert.matches("does_not_exist", err)
  end)

  -- Regression (fixed in 4271d45, bindings/actor.c resolve_script): a missing module
  -- used to raise, where a missing file returns nil, err (README: "pid, or nil, err").
  it("a missing module, naming it", function()
    local ok, pid, err = pcall(actor.spawn, "no.such.module")
    assert.is_true(ok, "spawn raised: " .. tostring(pid))
    assert.is_nil(pid)
    assert.matches("no.such.module", err, 1, true)
  end)

  it("waiting in init (actor.sleep / actor.call) is refused", function()
    local pid, err = actor.spawn(h.path("init_waits"), "sleep")
    assert.is_nil(pid)
    assert.matches("cannot wait", err)
    pid, err = actor.spawn(h.path("init_waits"), "call")
    assert.is_nil(pid)
    assert.matches("cannot wait", err)
  end)

  it("nothing of a failed spawn is left running", function()
    local c = h.collector()
    local pid = actor.spawn(h.path("service"), { notify = c, fail = "no" })
    assert.is_nil(pid)
    assert.same({}, h.entries(c))
  end)
end)
