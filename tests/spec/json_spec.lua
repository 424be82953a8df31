-- troupe.json from Lua: exact texts, exact values (integer or float), the refusals
-- and their messages, json.null and the array/object marks, and the module inside a
-- sandboxed actor.
package.path = debug.getinfo(1, "S").source:match("^@(.-)[^/]*$") .. "?.lua;" .. package.path
local actor = require "troupe.actor"
local json = require "troupe.json"
local h = require "helpers"

-- The error json.encode raises for v (it must raise).
local function encode_error(v)
  local ok, err = pcall(json.encode, v)
  assert.is_false(ok, "encode did not raise")
  return err
end

-- Whether s contains sub (plain text, no pattern).
local function has(sub, s)
  assert(type(s) == "string" and s:find(sub, 1, true), ("%q does not contain %q"):format(tostring(s), sub))
  return true
end

-- n arrays nested in each other.
local function nest(n)
  local t = {}
  for _ = 2, n do t = { t } end
  return t
end

describe("troupe.json", function()
  describe("encode", function()
    it("writes the hello object exactly", function()
      assert.equal('{"message":"Hello, World!"}', json.encode({ message = "Hello, World!" }))
    end)

    it("scalars", function()
      assert.equal("null", json.encode(nil))
      assert.equal("null", json.encode(json.null))
      assert.equal("true", json.encode(true))
      assert.equal("false", json.encode(false))
      assert.equal("42", json.encode(42))
      assert.equal("-9223372036854775808", json.encode(math.mininteger))
      assert.equal("1", json.encode(1.0))        -- as JSON.stringify
      assert.equal("0.1", json.encode(0.1))
      assert.equal("0.30000000000000004", json.encode(0.1 + 0.2))
      assert.equal("1e+300", json.encode(1e300))
      assert.equal("-0", json.encode(-0.0))
    end)

    it("floats read back to the same double", function()
      for _, x in ipairs({ 1 / 3, math.pi, 2 ^ 60 + 0.0, 1e-300, 5e-324, 123.456, -2.5e-8 }) do
        assert.equal(x, json.decode(json.encode(x)))
      end
    end)

    it("strings: quote, backslash and control characters escaped; other bytes as they are", function()
      assert.equal([["a\"b\\c/d"]], json.encode('a"b\\c/d'))
      assert.equal([["\b\f\n\r\t\u0000\u001f"]], json.encode("\b\f\n\r\t\0\31"))
      assert.equal('"caf\u{e9} \u{1F600} \255"', json.encode("caf\u{e9} \u{1F600} \255"))
    end)

    it("arrays, objects, and the empty table", function()
      assert.equal("[1,2,3]", json.encode({ 1, 2, 3 }))
      assert.equal('[1,"a",[true],{"k":null}]', json.encode({ 1, "a", { true }, { k = json.null } }))
      assert.equal("{}", json.encode({}))
      assert.equal("[]", json.encode(json.array()))
      assert.equal("[]", json.encode(json.array({})))
      assert.equal("{}", json.encode(json.object()))
      local backwards = {}
      for i = 10, 1, -1 do backwards[i] = i end
      assert.equal("[1,2,3,4,5,6,7,8,9,10]", json.encode(backwards))
    end)

    it("reads tables raw: metatables other than the marks are ignored", function()
      local t = setmetatable({ x = 1 }, { __index = { y = 2 }, __pairs = function() error("no") end })
      assert.equal('{"x":1}', json.encode(t))
    end)

    it("refuses what JSON cannot say, naming it", function()
      has("cannot encode a function", encode_error(print))
      has("cannot encode a function", encode_error({ cb = function() end }))
      has("cannot encode a thread", encode_error(coroutine.create(print)))
      has("cannot encode a userdata", encode_error(io.stdout))
      has("cannot encode a light userdata", encode_error(actor.self()))
      has("cannot encode NaN", encode_error(0 / 0))
      has("cannot encode infinity", encode_error({ math.huge }))
      has("cannot encode a table with mixed or sparse keys", encode_error({ 1, 2, x = 3 }))
      has("cannot encode a table with mixed or sparse keys", encode_error({ 1, nil, 3 }))
      has("cannot encode a table with mixed or sparse keys", encode_error({ [2] = "b" }))
      has("cannot encode a table with a boolean key", encode_error({ [true] = 1 }))
      has("cannot encode a table with a float key", encode_error({ [1.5] = 1 }))
      has("cannot encode a json.array with non-sequence keys", encode_error(json.array({ x = 1 })))
      has("cannot encode a json.object with a non-string key", encode_error(json.object({ 1 })))
      local t = {}
      t.self = t
      has("cannot encode a table with a cycle", encode_error(t))
      has("bad argument #1", encode_error(t))
    end)

    it("nests 128 deep, not 129", function()
      assert.equal(string.rep("[", 127) .. "{}" .. string.rep("]", 127), json.encode(nest(128)))
      has("cannot encode tables nested deeper than 128", encode_error(nest(129)))
    end)
  end)

  describe("decode", function()
    it("values, with integers and floats told apart", function()
      local v = json.decode('{"i": 1, "f": 1.0, "e": 1e2, "s": "x", "t": true, "n": null, "a": [1, [2]]}')
      assert.equal("integer", math.type(v.i))
      assert.equal("float", math.type(v.f))
      assert.equal("float", math.type(v.e))
      assert.equal(100.0, v.e)
      assert.equal("x", v.s)
      assert.is_true(v.t)
      assert.equal(json.null, v.n)
      assert.equal(2, #v.a)
      assert.equal(2, v.a[2][1])
    end)

    it("64-bit integers exactly; beyond them floats; -0 stays negative", function()
      assert.equal(math.maxinteger, json.decode("9223372036854775807"))
      assert.equal(math.mininteger, json.decode("-9223372036854775808"))
      assert.equal("float", math.type(json.decode("9223372036854775808")))
      assert.equal(2 ^ 63, json.decode("9223372036854775808"))
      assert.equal(-math.huge, 1 / json.decode("-0"))
      assert.equal(0.1, json.decode("0.1"))
      assert.equal(1e23, json.decode("1e23"))
    end)

    it("escapes, surrogate pairs into UTF-8", function()
      assert.equal('a"b\\c/d\b\f\n\r\t', json.decode([["a\"b\\c\/d\b\f\n\r\t"]]))
      assert.equal("\u{e9}\u{20ac}\u{1F600}\0", json.decode([["\u00e9\u20AC\ud83d\ude00\u0000"]]))
    end)

    it("a repeated key keeps its last value", function()
      assert.equal(3, json.decode('{"a": 1, "a": 3}').a)
    end)

    it("invalid JSON: nil and where and what", function()
      local cases = {
        { '{"name":"troupe"]', "invalid JSON at byte 17: expected ',' or '}'" },
        { "", "invalid JSON at byte 1: unexpected end of input" },
        { "[1,]", "invalid JSON at byte 4: trailing comma" },
        { '{"a":1,}', "invalid JSON at byte 8: trailing comma" },
        { "// hi\n1", "invalid JSON at byte 1: comments are not allowed" },
        { "NaN", "invalid JSON at byte 1: expected a value" },
        { "01", "invalid JSON at byte 1: leading zero in number" },
        { "1e400", "invalid JSON at byte 1: number out of range" },
        { '"a\tb"', "invalid JSON at byte 3: control character in string" },
        { [["\ud800"]], "invalid JSON at byte 2: lone surrogate in \\u escape" },
        { [["\x"]], "invalid JSON at byte 2: invalid escape" },
        { "[1] [2]", "invalid JSON at byte 5: unexpected data after the value" },
        { "{'a': 1}", "invalid JSON at byte 2: expected a string key" },
        { string.rep("[", 129) .. string.rep("]", 129), "invalid JSON at byte 129: nesting deeper than 128" },
      }
      for _, c in ipairs(cases) do
        local v, err = json.decode(c[1])
        assert.is_nil(v, c[1])
        assert.equal(c[2], err)
      end
      assert.is_table(json.decode(string.rep("[", 128) .. string.rep("]", 128)))
    end)

    it("raises on a non-string", function()
      assert.has_error(function() json.decode(5) end)
      assert.has_error(function() json.decode({}) end)
      assert.has_error(function() json.decode() end)
    end)
  end)

  describe("null and the marks", function()
    it("json.null is one value, distinct from nil, false and every pid", function()
      assert.equal(json.null, json.decode("null"))
      assert.equal(json.null, json.decode("[null]")[1])
      assert.is_not_nil(json.null)
      assert.are_not.equal(false, json.null)
      assert.are_not.equal(actor.self(), json.null)
      package.loaded["troupe.json"] = nil
      local again = require "troupe.json"
      package.loaded["troupe.json"] = json
      assert.equal(json.null, again.null)
      assert.equal(getmetatable(json.array()), getmetatable(again.decode("[]")))
    end)

    it("[] and {} keep their kind through a round trip", function()
      for _, text in ipairs({ "[]", "{}", '{"a":[]}', '{"b":{}}', '[[],[{}],{"x":[]}]' }) do
        assert.equal(text, json.encode(json.decode(text)))
      end
    end)

    it("json.array and json.object return the table they mark", function()
      local t = { 1 }
      assert.equal(t, json.array(t))
      assert.equal(getmetatable(json.decode("[]")), getmetatable(t))
      assert.matches("^json.array: ", tostring(t))
      local o = json.object()
      assert.equal("{}", json.encode(o))
      o.k = "v"
      assert.equal('{"k":"v"}', json.encode(o))
      assert.has_error(function() json.array(5) end)
    end)

    it("a decoded array can grow and be encoded again", function()
      local a = json.decode("[]")
      a[#a + 1] = "x"
      a[#a + 1] = json.null
      assert.equal('["x",null]', json.encode(a))
    end)
  end)

  describe("in a sandboxed actor", function()
    local pid
    setup(function() pid = h.spawn("json_codec") end)

    it("encodes and decodes", function()
      assert.equal('{"a":[1,2]}', actor.call(pid, { op = "encode", value = { a = { 1, 2 } } }))
      local v = actor.call(pid, { op = "decode", text = '{"a":[1,2.5,"x"]}' })
      assert.same({ 1, 2.5, "x" }, v.a)
    end)

    it("json.null survives the trip between VMs", function()
      assert.equal(json.null, actor.call(pid, { op = "decode", text = "null" }))
      assert.equal(json.null, actor.call(pid, { op = "decode", text = "[null]" })[1])
      assert.is_true(actor.call(pid, { op = "is_null", value = json.null }))
    end)

    it("a refusal raises there and reaches the caller as nil, err", function()
      local r, err = actor.call(pid, { op = "encode", value = { 1, x = 2 } })
      assert.is_nil(r)
      has("mixed or sparse keys", err)
    end)
  end)
end)
