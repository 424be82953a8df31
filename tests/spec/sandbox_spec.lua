-- The sandbox. `troupe test` runs the spec VM unsafe (busted needs io and C modules);
-- the sandbox is not inherited: actors spawned from here are sandboxed unless
-- opts.unsafe = true (which only an unsafe VM may ask for).
package.path = debug.getinfo(1, "S").source:match("^@(.-)[^/]*$") .. "?.lua;" .. package.path
local actor = require "troupe.actor"
local h = require "helpers"

-- Runs code in a fresh sandboxed actor; returns the packed results of pcall(code).
local function in_sandbox(code, ...)
  local p = h.spawn("probe")
  return h.eval(p, "return table.pack(pcall(function(...) " .. code .. " end, ...))", ...)
end

local tmpfiles = {}
local function tmpfile(contents, suffix)
  local name = os.tmpname() .. (suffix or ".lua")
  local f = assert(io.open(name, "wb"))
  f:write(contents)
  f:close()
  tmpfiles[#tmpfiles + 1] = name
  return name
end

local bytecode = string.dump(function() return "bytecode ran" end)

describe("the sandbox", function()
  teardown(function() for _, f in ipairs(tmpfiles) do os.remove(f) end end)

  it("is off in the spec VM itself (troupe test runs unsafe)", function()
    assert.is_table(io)
    assert.is_function(io.open)
    assert.is_function(debug.sethook)
  end)

  it("lets a handler wait inside xpcall", function()
    local pid = h.spawn("xpcall_sleep")
    local r = actor.call(pid, 21)
    assert.is_true(r.ok)
    assert.are.equal(42, r.v)
    actor.kill(pid)
  end)

  it("has no io library in a spawned actor", function()
    local r = in_sandbox("return io")
    assert.is_true(r[1])
    assert.is_nil(r[2])
    r = in_sandbox("return require('io')")
    assert.is_false(r[1])
  end)

  it("blocks os.execute, os.exit, os.remove, os.rename, os.tmpname, os.setlocale", function()
    for _, f in ipairs({ "execute", "exit", "remove", "rename", "tmpname", "setlocale" }) do
      local r = in_sandbox("return os." .. f .. "('true')")
      assert.is_false(r[1], "os." .. f .. " ran")
      assert.matches("not available in the sandbox", r[2])
    end
  end)

  it("keeps the harmless os functions", function()
    local r = in_sandbox("return os.time() > 0 and os.clock() >= 0 and type(os.date()) == 'string'")
    assert.same({ true, true, n = 2 }, r)
  end)

  it("keeps only debug.traceback", function()
    local r = in_sandbox([[
      local names = {}
      for k in pairs(debug) do names[#names + 1] = k end
      return table.concat(names, ","), type(debug.traceback("x"))
    ]])
    assert.same({ true, "traceback", "string", n = 3 }, r)
    assert.is_false(in_sandbox("return require('debug')")[1])
  end)

  it("loads text chunks", function()
    assert.same({ true, 3, n = 2 }, in_sandbox("return load('return 1 + 2')()"))
    assert.same({ true, 5, n = 2 }, in_sandbox("return load('return x', 'c', 't', { x = 5 })()"))
  end)

  it("refuses bytecode in load, whatever the mode", function()
    local r = in_sandbox("return load(...)", bytecode)
    assert.is_true(r[1])
    assert.is_nil(r[2])                                  -- nil, "attempt to load a binary chunk"
    assert.matches("binary", r[3])
    r = in_sandbox("return load(..., 'x', 'b')", bytecode)
    assert.is_false(r[1])
    assert.matches("only text chunks", r[2])
    r = in_sandbox("return load(..., 'x', 'bt')", bytecode)
    assert.is_false(r[1])
    r = in_sandbox([[
      local s, done = ..., false
      return load(function() if done then return nil end done = true return s end)
    ]], bytecode)
    assert.is_nil(r[2])
  end)

  it("refuses bytecode files in loadfile, dofile and require", function()
    local file = tmpfile(bytecode)
    local r = in_sandbox("return loadfile(...)", file)
    assert.is_true(r[1])
    assert.is_nil(r[2])
    assert.is_false(in_sandbox("return dofile(...)", file)[1])
    local dir, mod = file:match("^(.*)/([^/]+)%.lua$")
    r = in_sandbox("package.path = ... .. '/?.lua'; return require(select(2, ...))", dir, mod)
    assert.is_false(r[1])
    assert.matches("binary", r[2])
  end)

  it("loads text files with loadfile, dofile and require", function()
    local file = tmpfile("return 'text ran'")
    assert.same({ true, "text ran", n = 2 }, in_sandbox("return loadfile(...)()", file))
    assert.same({ true, "text ran", n = 2 }, in_sandbox("return dofile(...)", file))
  end)

  it("refuses bytecode as an actor script", function()
    local file = tmpfile(string.dump(function() return { handle = function() return 1 end } end))
    local pid, err = actor.spawn(file)
    assert.is_nil(pid)
    assert.matches("binary", err)
  end)

  it("has no native modules: package.loadlib and the C searchers are gone", function()
    local r = in_sandbox("return package.loadlib('/lib/x86_64-linux-gnu/libc.so.6', 'puts')")
    assert.is_false(r[1])
    assert.matches("not available in the sandbox", r[2])
    r = in_sandbox("package.cpath = '/usr/lib/x86_64-linux-gnu/lua/5.4/?.so'; return require('lfs')")
    assert.is_false(r[1])
    assert.is_nil(in_sandbox("return package.searchers[3]")[2])
  end)

  it("lets the spec VM (unsafe) spawn an unsafe actor with opts.unsafe", function()
    local p = h.spawn("probe", nil, { unsafe = true })
    local r = h.eval(p, "return table.pack(type(io), type(debug.sethook), os.execute('true'))")
    assert.equal("table", r[1])
    assert.equal("function", r[2])
    assert.is_true(r[3])
  end)

  it("is not inherited: an unsafe actor's children are sandboxed", function()
    local p = h.spawn("probe", nil, { unsafe = true })
    local child = h.eval(p, "return actor.spawn(...)", h.path("probe"))
    assert.truthy(child)
    assert.is_nil(h.eval(child, "return io"))
  end)

  it("a sandboxed actor cannot spawn an unsafe one", function()
    local p = h.spawn("probe")
    local r = h.eval(p, "return table.pack(pcall(actor.spawn, ..., nil, { unsafe = true }))", h.path("probe"))
    assert.is_false(r[1])
    assert.matches("sandboxed actor cannot spawn an unsafe one", r[2])
  end)

  it("applies to supervisor children too (unless unsafe is asked by an unsafe VM)", function()
    local c = h.collector()
    local sup = assert(actor.supervisor{ children = {
      { id = "safe", script = h.path("service"), args = { notify = c, id = "safe" } },
      { id = "unsafe", script = h.path("service"), args = { notify = c, id = "unsafe" }, unsafe = true },
    } })
    local got = h.wait_entries(c, 2)
    local pids = {}
    for _, e in ipairs(got) do pids[e.m.id] = e.m.started end
    assert.is_nil(actor.call(pids.safe, { op = "has_io" }))
    assert.is_true(actor.call(pids.unsafe, { op = "has_io" }))
    actor.kill(sup, "kill")
  end)
end)
