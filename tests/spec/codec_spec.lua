-- Values between VMs: round trips through an echo actor, and what is refused.
package.path = debug.getinfo(1, "S").source:match("^@(.-)[^/]*$") .. "?.lua;" .. package.path
local actor = require "troupe.actor"
local h = require "helpers"

local echo
local function rt(v) return actor.call(echo, v) end

-- A table nested n deep: { { { ... } } } (n tables in all).
local function nest(n)
  local t = {}
  local inner = t
  for _ = 2, n do inner[1] = {}; inner = inner[1] end
  return t
end

describe("the codec", function()
  setup(function() echo = h.spawn("echo") end)

  describe("round trips", function()
    it("nil and booleans", function()
      assert.is_nil(rt(nil))
      assert.is_true(rt(true))
      assert.is_false(rt(false))
    end)

    it("integers stay integers, across the whole 64-bit range", function()
      for _, v in ipairs({ 0, 1, -1, 63, 64, 127, 128, -128, 300, 1 << 31, -(1 << 31), 1 << 53,
                           (1 << 53) + 1, math.maxinteger, math.mininteger, math.maxinteger - 1 }) do
        local r = rt(v)
        assert.equal("integer", math.type(r), "for " .. v)
        assert.equal(v, r)
      end
    end)

    it("floats stay floats, even integral ones", function()
      for _, v in ipairs({ 0.0, 1.0, -1.0, 0.5, 3.141592653589793, 2^53, 2^63, 1e308, 5e-324,
                           -2.5e-10, math.pi, 1/3 }) do
        local r = rt(v)
        assert.equal("float", math.type(r), "for " .. v)
        assert.equal(v, r)
      end
    end)

    it("keeps -0.0, infinities and NaN", function()
      local z = rt(-0.0)
      assert.equal("float", math.type(z))
      assert.equal(-math.huge, 1 / z)
      assert.equal(math.huge, rt(math.huge))
      assert.equal(-math.huge, rt(-math.huge))
      local nan = rt(0 / 0)
      assert.is_true(nan ~= nan)
    end)

    it("strings: empty, short, at the short/long boundary, binary", function()
      for _, n in ipairs({ 0, 1, 62, 63, 64, 65, 127, 128, 1000, 70000 }) do
        local s = ("s"):rep(n)
        assert.equal(s, rt(s))
      end
      local bin = {}
      for i = 0, 255 do bin[#bin + 1] = string.char(i) end
      bin = table.concat(bin):rep(3)
      assert.equal(bin, rt(bin))
      assert.equal("a\0b\0", rt("a\0b\0"))
    end)

    it("a huge string (8 MB)", function()
      local s = ("0123456789abcdef"):rep(512 * 1024)
      local r = rt(s)
      assert.equal(#s, #r)
      assert.is_true(r == s)
    end)

    it("arrays, records, mixed and nested tables", function()
      local v = {
        1, 2, 3, "four", 5.0, true, false,
        name = "x", n = 10, f = 1.5, nested = { a = { b = { c = { "deep" } } } },
        list = { { 1 }, { 2 }, { 3 } },
      }
      assert.same(v, rt(v))
      assert.same({}, rt({}))
      assert.equal("float", math.type(rt({ 5.0 })[1]))
      assert.equal("integer", math.type(rt({ x = 5 }).x))
    end)

    it("big arrays and big hashes (counts beyond one byte)", function()
      local arr, map = {}, {}
      for i = 1, 5000 do arr[i] = i; map["k" .. i] = i * 2 end
      assert.same(arr, rt(arr))
      assert.same(map, rt(map))
    end)

    it("sparse arrays and non-string keys", function()
      local v = { [1] = "a", [3] = "c", [100] = "z", [-1] = "neg", [0] = "zero",
                  [1.5] = "float key", [true] = "t", [false] = "f" }
      local r = rt(v)
      assert.same(v, r)
      assert.is_nil(r[2])
    end)

    it("a sequence built backwards (its tail in the hash part)", function()
      local v = {}
      for i = 300, 1, -1 do v[i] = i end
      v.x = "y"
      assert.same(v, rt(v))
    end)

    it("tables as keys", function()
      local r = rt({ [{ 1, 2 }] = "k" })
      local k, val = next(r)
      assert.same({ 1, 2 }, k)
      assert.equal("k", val)
    end)

    it("pids, alone, in tables and as keys", function()
      local p = h.spawn("echo")
      assert.equal(p, rt(p))
      local r = rt({ who = p, list = { p, actor.self() }, [p] = "by pid" })
      assert.equal(p, r.who)
      assert.equal(actor.self(), r.list[2])
      assert.equal("by pid", r[p])
      assert.equal(tostring(p), tostring(r.who))
      assert.equal(42, actor.call(r.who, 42))   -- still usable
    end)

    it("a table seen twice (no cycle) arrives as two copies", function()
      local shared = { 1, 2 }
      local r = rt({ a = shared, b = shared })
      assert.same({ 1, 2 }, r.a)
      assert.same({ 1, 2 }, r.b)
      assert.are_not.equal(r.a, r.b)
    end)

    it("drops metatables (raw contents travel)", function()
      local v = setmetatable({ x = 1 }, { __index = function() return "meta" end })
      local r = rt(v)
      assert.is_nil(getmetatable(r))
      assert.is_nil(r.y)
      assert.equal(1, r.x)
    end)

    it("nesting 64 deep (the limit) passes", function()
      local r = rt(nest(64))
      local d = 0
      while r do d = d + 1; r = r[1] end
      assert.equal(64, d)
    end)

    it("spawn args and timer messages use the same codec", function()
      local c = h.collector()
      local v = { i = 1, f = 1.0, z = -0.0, s = ("x"):rep(100), p = c }
      local pid = h.spawn("service", { value = v })
      local st = actor.call(pid, { op = "state" }).value
      assert.equal("integer", math.type(st.i))
      assert.equal("float", math.type(st.f))
      assert.equal(-math.huge, 1 / st.z)
      assert.equal(c, st.p)
      actor.after(0, v, c)
      local got = h.wait_entries(c, 1)[1].m
      assert.equal("float", math.type(got.f))
      assert.equal(c, got.p)
    end)
  end)

  describe("refuses, raising a clear error", function()
    local function refused(v, pattern)
      local ok, err = pcall(actor.send, echo, v)
      assert.is_false(ok, "send did not raise")
      assert.matches(pattern, err)
      ok, err = pcall(actor.call, echo, v)
      assert.is_false(ok, "call did not raise")
      assert.matches(pattern, err)
    end

    it("a function", function()
      refused(print, "cannot send a function")
      refused({ cb = function() end }, "cannot send a function")
      refused({ [print] = 1 }, "cannot send a function")
    end)

    it("a coroutine", function()
      refused(coroutine.create(function() end), "cannot send a thread")
      refused({ co = coroutine.running() }, "cannot send a thread")
    end)

    it("a full userdata (an io file)", function()
      refused(io.stdout, "cannot send a userdata")
      refused({ f = io.stderr }, "cannot send a userdata")
    end)

    it("a table with a cycle", function()
      local t = {}
      t.self = t
      refused(t, "cannot send a table with a cycle")
      local a, b = {}, {}
      a.b = b; b.list = { a }
      refused(a, "cannot send a table with a cycle")
      local k = {}
      k[k] = true
      refused(k, "cannot send a table with a cycle")
    end)

    it("nesting deeper than 64", function()
      refused(nest(65), "deeper than 64")
    end)

    it("and the echo actor is still fine afterwards", function()
      assert.equal("still here", rt("still here"))
    end)

    it("a handler's reply that cannot travel: the caller gets nil, err", function()
      local pid = h.spawn("service")
      local r, err = actor.call(pid, { op = "reply_function" })
      assert.is_nil(r)
      assert.matches("cannot send a function", err)
      assert.equal("pong", actor.call(pid, "ping"))
    end)
  end)
end)
