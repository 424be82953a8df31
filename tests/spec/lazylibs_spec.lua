-- Lazy standard libraries and the compiled-chunk cache: what a spawned (sandboxed)
-- actor sees must not tell either apart from stock Lua and a fresh compilation.
--   * coroutine, table, math, utf8, os and string open on first use in a sandboxed VM
--     (runtime/lua/vm.c); once open they are the stock libraries (the spec VM itself
--     is unsafe and opens them eagerly: it is the reference here).
--   * an actor script's compiled form is cached per runtime (runtime/lua/chunks.c);
--     an edited file is compiled again, errors keep their file:line.
package.path = debug.getinfo(1, "S").source:match("^@(.-)[^/]*$") .. "?.lua;" .. package.path
local actor = require "troupe.actor"
local h = require "helpers"

local LIBS = { "coroutine", "table", "math", "utf8", "os", "string" }

local tmpfiles = {}
local function tmpfile(contents)
  local base = os.tmpname()               -- created empty: only its name is wanted
  os.remove(base)
  local name = base .. ".lua"
  local f = assert(io.open(name, "wb"))
  f:write(contents)
  f:close()
  tmpfiles[#tmpfiles + 1] = name
  return name
end

local function rewrite(name, contents)
  local f = assert(io.open(name, "wb"))
  f:write(contents)
  f:close()
end

-- Sets the file's mtime to the epoch second t (long past: the cache takes files whose
-- mtime is at least a second old).
local function set_mtime(name, t)
  assert(os.execute(("touch -m -d @%d %q"):format(t, name)))
end

-- Runs code in a fresh sandboxed actor, as the body of a function with `...` = args;
-- returns the packed results of pcall. Nothing runs in the actor before it: the libraries
-- are as spawn left them (the probe fixture would open some itself).
local function fresh(code, ...)
  local file = tmpfile("local args = ...\n"
    .. "local function body(...) " .. code .. "\nend\n"
    .. "return { handle = function(_, args) return table.pack(pcall(body, table.unpack(args, 1, args.n))) end }")
  local pid = assert(actor.spawn(file))
  return assert(actor.call(pid, table.pack(...), 5))
end

-- The sorted names and types of a library's fields.
local function shape(lib)
  local out = {}
  for k, v in pairs(lib) do out[#out + 1] = k .. ":" .. type(v) end
  table.sort(out)
  return table.concat(out, " ")
end

describe("lazy standard libraries in a sandboxed actor", function()
  teardown(function() for _, f in ipairs(tmpfiles) do os.remove(f) end end)

  it("are not opened before a script uses them", function()
    -- the handler itself uses table: look from the script's top level instead
    local file = tmpfile([[
      local seen = {}
      for _, name in next, { "coroutine", "table", "math", "utf8", "os", "string" } do
        seen[#seen + 1] = rawget(_G, name) ~= nil or rawget(package.loaded, name) ~= nil
      end
      return { handle = function() return seen end }
    ]])
    local pid = assert(actor.spawn(file))
    assert.same({ false, false, false, false, false, false }, actor.call(pid, "seen"))
  end)

  it("are the stock libraries once opened: same fields, same kinds", function()
    for _, name in ipairs(LIBS) do
      local r = fresh("local lib = _G[...] local out = {} "
        .. "for k, v in pairs(lib) do out[#out + 1] = k .. ':' .. type(v) end "
        .. "table.sort(out) return table.concat(out, ' ')", name)
      assert.is_true(r[1], r[2])
      assert.equal(shape(_G[name]), r[2], name)
    end
  end)

  it("open through require as well, as one table with the global", function()
    for _, name in ipairs(LIBS) do
      local r = fresh("local name = ... local lib = require(name) "
        .. "return lib == _G[name], package.loaded[name] == lib, type(lib)", name)
      assert.same({ true, true, true, "table", n = 4 }, r, name)
    end
  end)

  it("work when first used: math, table, utf8, coroutine, os", function()
    assert.same({ true, math.pi, n = 2 }, fresh("return math.pi"))
    assert.same({ true, "integer", n = 2 }, fresh("return math.type(1)"))
    assert.same({ true, "a,b", n = 2 }, fresh("local t = {} table.insert(t, 'a') table.insert(t, 'b') return table.concat(t, ',')"))
    assert.same({ true, "\u{48}\u{20AC}", n = 2 }, fresh("return utf8.char(72, 8364)"))
    assert.same({ true, 3, n = 2 }, fresh("return coroutine.wrap(function() coroutine.yield(3) end)()"))
    assert.same({ true, true, n = 2 }, fresh("return os.time() > 0"))
  end)

  it("keep string methods and string coercions working before string is named", function()
    assert.same({ true, "ABC", n = 2 }, fresh("return ('abc'):upper()"))
    assert.same({ true, "xxx", n = 2 }, fresh("local s = 'x' return s:rep(3)"))
    assert.same({ true, 11, n = 2 }, fresh("return '10' + 1"))
    assert.same({ true, 11, n = 2 }, fresh("return 1 + '10'"))
    assert.same({ true, -2, n = 2 }, fresh("return -'2'"))
    assert.same({ true, 3, n = 2 }, fresh("return '7' // '2'"))
    assert.same({ true, 8.0, n = 2 }, fresh("return '2' ^ 3"))
    assert.same({ true, true, n = 2 }, fresh("return ('abc').len == string.len"))
    assert.same({ true, true, n = 2 }, fresh("return getmetatable('').__index == string"))
    -- errors: the same message as stock Lua's, from the same place (the caller's line)
    local r = fresh("return 'a' + 1")
    local _, stock = pcall(function() return "a" + 1 end)
    assert.is_false(r[1])
    assert.matches("^.+%.lua:%d+: ", r[2])
    assert.equal((stock:gsub("^.-:%d+: ", "")), (r[2]:gsub("^.-:%d+: ", "")))
    r = fresh("return '10' // 0")
    _, stock = pcall(function() return "10" // 0 end)
    assert.same({ false, stock, n = 2 }, r)
    -- a string and a value with its own metamethod: that metamethod
    assert.same({ true, "mm", n = 2 },
                fresh("return '10' + setmetatable({}, { __add = function() return 'mm' end })"))
    assert.same({ true, 3, n = 2 }, fresh("return #'abc'"))
  end)

  it("show in pairs(_G) and pairs(package.loaded)", function()
    local r = fresh([[
      local g, l = {}, {}
      for k in pairs(_G) do g[k] = true end
      for k in pairs(package.loaded) do l[k] = true end
      for _, name in ipairs({ "coroutine", "table", "math", "utf8", "os", "string" }) do
        if not g[name] then return "not in _G: " .. name end
        if not l[name] then return "not in package.loaded: " .. name end
      end
      return "all"
    ]])
    assert.same({ true, "all", n = 2 }, r)
  end)

  it("leave no metatable on _G or package.loaded for a script to see", function()
    assert.same({ true, true, true, n = 3 },
                fresh("return getmetatable(_G) == nil, getmetatable(package.loaded) == nil"))
  end)

  it("let a script put its own metatable on _G (strict mode)", function()
    local r = fresh([[
      setmetatable(_G, { __index = function(_, k) error("undeclared " .. k, 2) end })
      local ok, err = pcall(function() return undeclared_x end)
      return math.floor(2.5), string.upper("s"), ok, err:match("undeclared [%w_]+")
    ]])
    assert.same({ true, 2, "S", false, "undeclared undeclared_x", n = 5 }, r)
  end)

  it("keep a script's own assignments to a library's name, as stock Lua does", function()
    assert.same({ true, true, "table", n = 3 },
                fresh("math = nil return math == nil, type(package.loaded.math)"))
    assert.same({ true, 5, "table", n = 3 }, fresh("table = 5 return table, type(require 'table')"))
    assert.same({ true, true, "table", n = 3 },
                fresh("package.loaded.utf8 = nil return package.loaded.utf8 == nil, type(utf8)"))
  end)

  it("are found through an environment that falls back to _G", function()
    assert.same({ true, math.pi, n = 2 },
                fresh("return load('return math.pi', 'x', 't', setmetatable({}, { __index = _G }))()"))
  end)

  it("keep the sandbox: os functions blocked, no io, debug only traceback", function()
    for _, code in ipairs({ "return os.execute('true')", "return require('os').exit()",
                            "return require('io')" }) do
      assert.is_false(fresh(code)[1], code)
    end
    assert.same({ true, true, n = 2 }, fresh("return io == nil and debug.sethook == nil"))
  end)

  it("cost nothing until used", function()
    local r = fresh([[
      collectgarbage() collectgarbage()
      local before = collectgarbage("count")
      local _ = math.pi, table.insert, utf8.char, os.time, coroutine.wrap, string.rep
      collectgarbage() collectgarbage()
      return collectgarbage("count") - before
    ]])
    assert.is_true(r[1], r[2])
    assert.is_true(r[2] > 4, "the libraries took only " .. tostring(r[2]) .. " KB")
  end)
end)

describe("the compiled-chunk cache of actor scripts", function()
  teardown(function() for _, f in ipairs(tmpfiles) do os.remove(f) end end)

  local function says(file)
    local pid, err = actor.spawn(file)
    assert(pid, err)
    return actor.call(pid, "which")
  end

  it("compiles an edited script again (same size, then another size)", function()
    local file = tmpfile("return { handle = function() return 'v1' end }\n")
    set_mtime(file, 1600000000)
    assert.equal("v1", says(file))
    assert.equal("v1", says(file))            -- from the cache
    rewrite(file, "return { handle = function() return 'v2' end }\n")
    assert.equal("v2", says(file))
    set_mtime(file, 1600000100)
    assert.equal("v2", says(file))
    assert.equal("v2", says(file))
    rewrite(file, "return { handle = function() return 'version 3' end }\n")
    set_mtime(file, 1600000100)               -- the same mtime again: size and ctime differ
    assert.equal("version 3", says(file))
    assert.equal("version 3", says(file))
  end)

  it("reports a syntax error with file:line on every spawn", function()
    local file = tmpfile("return {\n  handle = function() end\n  this is not lua\n}\n")
    set_mtime(file, 1600000000)
    for _ = 1, 3 do
      local pid, err = actor.spawn(file)
      assert.is_nil(pid)
      assert.matches(file:gsub("%p", "%%%0") .. ":3:", err)
    end
  end)

  it("keeps line numbers in errors raised by a cached chunk", function()
    local file = tmpfile("return {\n  handle = function(_, m)\n\n    error('boom ' .. m)\n  end,\n}\n")
    set_mtime(file, 1600000000)
    for i = 1, 3 do
      local v, err = actor.call(assert(actor.spawn(file)), i)
      assert.is_nil(v)
      assert.matches(file:gsub("%p", "%%%0") .. ":4: boom " .. i, err)
    end
  end)

  it("gives each actor its own globals and upvalues from one cached chunk", function()
    local file = tmpfile("counter = 0\nreturn { handle = function() counter = counter + 1 return counter end }\n")
    set_mtime(file, 1600000000)
    local a, b = assert(actor.spawn(file)), assert(actor.spawn(file))
    assert.equal(1, actor.call(a, "x"))
    assert.equal(2, actor.call(a, "x"))
    assert.equal(1, actor.call(b, "x"))
  end)

  it("still refuses a bytecode script, cached text or not", function()
    local file = tmpfile("return { handle = function() return 'text' end }\n")
    set_mtime(file, 1600000000)
    assert.equal("text", says(file))
    rewrite(file, string.dump(function() return { handle = function() return "bytecode" end } end))
    set_mtime(file, 1600000000)
    local pid, err = actor.spawn(file)
    assert.is_nil(pid)
    assert.matches("binary", err)
  end)
end)
