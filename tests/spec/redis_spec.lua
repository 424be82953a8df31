-- troupe.redis against the real Redis of tests/services.sh (TROUPE_REDIS_URL): reply
-- types, binary safety, pipeline and multi, many coroutines at once, pub/sub, the URL's
-- AUTH and database, timeouts, and failing fast when the server cannot be reached.
package.path = debug.getinfo(1, "S").source:match("^@(.-)[^/]*$") .. "?.lua;" .. package.path
local actor = require "troupe.actor"
local h = require "helpers"

local URL = os.getenv("TROUPE_REDIS_URL")
if not URL or URL == "" then
  pending("troupe.redis: TROUPE_REDIS_URL is not set (make test starts a Redis)")
  return
end

local redis = require "troupe.redis"
local HOSTPORT = URL:match("^redis://[^/]*@([^/]+)") or URL:match("^redis://([^/]+)")
local P = ("troupe:spec:%d:%d:"):format(os.time(), math.random(1e9))   -- key prefix

local function k(name) return P .. name end

-- Runs fn with the runtime configured for url, then restores the test server.
local function with_url(url, fn)
  redis.configure({ url = url })
  local ok, err = pcall(fn)
  redis.configure({ url = URL })
  assert(h.wait_until(function() return redis.connected() end, 5), "redis did not come back")
  if not ok then error(err, 0) end
end

describe("troupe.redis replies", function()
  it("converts each reply type the way ioredis does", function()
    assert.equal("OK", redis.call("SET", k("s"), "v"))            -- status
    assert.equal("PONG", redis.call("PING"))
    assert.equal("v", redis.call("GET", k("s")))                   -- bulk
    assert.is_nil(redis.call("GET", k("missing")))                 -- nil
    local v, err = redis.call("GET", k("missing"))
    assert.is_nil(v); assert.is_nil(err)
    assert.equal(1, redis.call("INCR", k("n")))                    -- integer
    assert.equal("integer", math.type(redis.call("INCRBY", k("n"), 41)))
    assert.equal(3, redis.call("RPUSH", k("l"), "a", "b", "c"))
    assert.same({ "a", "b", "c" }, redis.call("LRANGE", k("l"), 0, -1))   -- array
    assert.same({}, redis.call("LRANGE", k("nol"), 0, -1))         -- empty array
  end)

  it("keeps nested arrays, with nil as false and errors as {err=} inside them", function()
    local r = redis.call("EVAL", "return {1, {2, 'x', {3}}, 'y', false, redis.error_reply('E1')}", 0)
    assert.same({ 1, { 2, "x", { 3 } }, "y", false }, { r[1], r[2], r[3], r[4] })
    assert.matches("E1$", r[5].err)
    redis.call("SET", k("m1"), "1")
    assert.same({ "1", false }, redis.call("MGET", k("m1"), k("missing")))
    local scan = redis.call("SCAN", 0, "MATCH", k("m1"), "COUNT", 1000)
    assert.equal("string", type(scan[1]))
    assert.equal("table", type(scan[2]))
  end)

  it("returns nil and the text of an error reply", function()
    redis.call("SET", k("str"), "abc")
    local v, err = redis.call("INCR", k("str"))
    assert.is_nil(v)
    assert.matches("^ERR value is not an integer", err)
    v, err = redis.call("LPUSH", k("str"), "x")
    assert.is_nil(v)
    assert.matches("^WRONGTYPE", err)
    v, err = redis.call("NOSUCHCOMMAND", "x")
    assert.is_nil(v)
    assert.matches("^ERR unknown command", err)
  end)

  it("is binary-safe in keys, values and replies; numbers go as their text", function()
    local bytes = {}
    for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
    local all = table.concat(bytes) .. "\0tail\0"
    local key = k("bin\0key")
    assert.equal("OK", redis.call("SET", key, all))
    local got = redis.call("GET", key)
    assert.equal(#all, #got)
    assert.equal(all, got)
    assert.equal(#all, redis.call("STRLEN", key))
    assert.is_nil(redis.call("GET", k("bin")))                     -- the key did not stop at \0
    local big = string.rep("x\0y", 100000)
    redis.call("SET", k("big"), big)
    assert.equal(big, redis.call("GET", k("big")))
    redis.call("SET", k("num"), 2.5)
    assert.equal("2.5", redis.call("GET", k("num")))
    redis.call("SET", k("int"), 42)
    assert.equal("42", redis.call("GET", k("int")))
  end)
end)

describe("troupe.redis pipeline and multi", function()
  it("pipeline returns every reply in order, errors and nils in place", function()
    redis.call("SET", k("ps"), "text")
    local r = redis.pipeline({
      { "SET", k("p"), "1" }, { "INCR", k("p") }, { "GET", k("p") }, { "GET", k("nop") },
      { "INCR", k("ps") }, { "LRANGE", k("nol"), 0, -1 },
    })
    assert.equal(6, #r)
    assert.equal("OK", r[1]); assert.equal(2, r[2]); assert.equal("2", r[3])
    assert.is_false(r[4])
    assert.matches("^ERR value is not an integer", r[5].err)
    assert.same({}, r[6])
  end)

  it("a long pipeline keeps the order of its replies", function()
    local cmds = {}
    for i = 1, 2000 do cmds[i] = { "ECHO", tostring(i) } end
    local r = redis.pipeline(cmds, { timeout = 5 })
    assert.equal(2000, #r)
    for i = 1, 2000 do assert.equal(tostring(i), r[i]) end
  end)

  it("multi runs the commands as one transaction and returns EXEC's replies", function()
    local r = redis.multi({ { "SET", k("t"), "10" }, { "INCRBY", k("t"), 5 }, { "GET", k("t") } })
    assert.same({ "OK", 15, "15" }, r)
  end)

  it("multi with a command refused while queueing applies nothing: nil, EXECABORT", function()
    redis.call("SET", k("ta"), "1")
    local r, err = redis.multi({ { "INCR", k("ta") }, { "NOSUCHCMD" }, { "INCR", k("ta") } })
    assert.is_nil(r)
    assert.matches("^EXECABORT", err)
    assert.matches("command 2: ERR unknown command", err)
    assert.equal("1", redis.call("GET", k("ta")))
  end)

  it("multi with a command failing at run time applies the others", function()
    redis.call("SET", k("tb"), "abc")
    local r = redis.multi({ { "SET", k("tc"), "1" }, { "INCR", k("tb") }, { "INCR", k("tc") } })
    assert.equal("OK", r[1])
    assert.matches("^ERR value is not an integer", r[2].err)
    assert.equal(2, r[3])
  end)

  it("multi is atomic: a reader never sees half of a transaction", function()
    redis.call("SET", k("even"), 0)
    local c = h.collector()
    local writers = {}
    for i = 1, 4 do
      writers[i] = h.spawn("probe")
      for _ = 1, 25 do
        actor.send(writers[i], { op = "eval", code = [[
          local key, c = ...
          local r = require("troupe.redis").multi({ { "INCR", key }, { "INCR", key } })
          actor.send(c, r and r[2] or "failed")
        ]], args = { n = 2, k("even"), c } })
      end
    end
    local odd = 0
    local done = h.wait_until(function()
      local v = tonumber(redis.call("GET", k("even")))
      if v % 2 == 1 then odd = odd + 1 end
      return v == 200
    end, 10)
    assert.is_truthy(done)
    assert.equal(0, odd)
    local got = h.wait_entries(c, 100, 5)
    local seen = {}
    for _, e in ipairs(got) do seen[e.m] = (seen[e.m] or 0) + 1 end
    for i = 1, 100 do assert.equal(1, seen[2 * i], "EXEC result " .. 2 * i) end
    for _, p in ipairs(writers) do actor.kill(p, "kill") end
  end)
end)

describe("troupe.redis under concurrency", function()
  it("1,000 INCRs from 20 actors (50 coroutines each) count exactly", function()
    local c = h.collector()
    local actors = {}
    for i = 1, 20 do
      actors[i] = h.spawn("probe", nil, i % 2 == 0 and { worker = i % 2 } or nil)
      for _ = 1, 50 do
        actor.send(actors[i], { op = "eval", code = [[
          local key, c = ...
          local v, err = require("troupe.redis").call("INCR", key)
          actor.send(c, v or err)
        ]], args = { n = 2, k("count"), c } })
      end
    end
    local got = h.wait_entries(c, 1000, 10)
    assert.equal(1000, #got)
    local seen = {}
    for _, e in ipairs(got) do
      assert.equal("integer", math.type(e.m), tostring(e.m))
      assert.is_nil(seen[e.m], "INCR returned " .. tostring(e.m) .. " twice")
      seen[e.m] = true
    end
    for i = 1, 1000 do assert.is_true(seen[i]) end
    assert.equal("1000", redis.call("GET", k("count")))
    for _, p in ipairs(actors) do actor.kill(p, "kill") end
  end)
end)

describe("troupe.redis pub/sub", function()
  it("delivers messages to an actor: {type='redis', channel=, message=}", function()
    local p = h.spawn("probe")
    local ch = k("news")
    assert.is_true(h.eval(p, "return require('troupe.redis').subscribe(..., actor.self())", ch))
    assert.equal(1, redis.publish(ch, "hello\0world"))
    local m = h.wait_inbox(p, function(m) return type(m) == "table" and m.type == "redis" end)
    assert.same({ type = "redis", channel = ch, message = "hello\0world" }, m)
    -- subscribing twice is one subscription; unsubscribing stops the messages
    assert.is_true(h.eval(p, "return require('troupe.redis').subscribe(..., actor.self())", ch))
    redis.publish(ch, "second")
    assert.truthy(h.wait_inbox(p, function(x) return type(x) == "table" and x.message == "second" end))
    assert.is_true(h.eval(p, "return require('troupe.redis').unsubscribe(...)", ch))
    assert.truthy(h.wait_until(function() return redis.publish(ch, "gone") == 0 end))
    local n = 0
    for _, x in ipairs(h.inbox(p)) do
      if type(x) == "table" and x.type == "redis" and x.message ~= "gone" then n = n + 1 end
    end
    assert.equal(2, n)
    actor.kill(p, "kill")
  end)

  it("subscribes another actor by pid and several subscribers to one channel", function()
    local c1, c2 = h.collector(), h.collector()
    local ch = k("fanout")
    assert.is_true(redis.subscribe(ch, c1))
    assert.is_true(redis.subscribe(ch, c2))
    assert.equal(1, redis.publish(ch, "x"))       -- one server-side subscription
    h.wait_entries(c1, 1); h.wait_entries(c2, 1)
    assert.is_true(redis.unsubscribe(ch, c1))
    redis.publish(ch, "y")
    h.wait_entries(c2, 2)
    assert.equal(1, #h.entries(c1))
    redis.unsubscribe(ch, c2)
  end)

  it("calls a function in the subscribing VM, which may itself wait", function()
    local ch, got = k("fn"), {}
    assert.is_true(redis.subscribe(ch, function(message, channel)
      local echo = redis.call("ECHO", "inside")   -- waits: the next message may run meanwhile
      got[#got + 1] = { message, channel, echo }
    end))
    assert.equal(1, redis.publish(ch, "one"))
    redis.publish(ch, "two")
    assert.truthy(h.wait_until(function() return #got == 2 end))
    table.sort(got, function(a, b) return a[1] < b[1] end)
    assert.same({ "one", ch, "inside" }, got[1])
    assert.same({ "two", ch, "inside" }, got[2])
    redis.unsubscribe(ch)
    assert.truthy(h.wait_until(function() return redis.publish(ch, "three") == 0 end))
    assert.equal(2, #got)
  end)

  it("takes a function subscription made in init, where nothing may wait", function()
    local ch = k("init")
    local p = h.spawn("redis_fn_sub", { channel = ch })
    assert.truthy(h.wait_until(function() return redis.publish(ch, "hi") == 1 end))
    local got
    assert.truthy(h.wait_until(function()
      got = actor.call(p, { op = "got" })
      return #got >= 1
    end))
    assert.same({ "hi", ch }, got[1])
    actor.kill(p, "kill")
  end)

  it("psubscribe: a pattern's messages carry the channel and the pattern", function()
    local pat, got = k("ps") .. ".*", {}
    assert.is_true(redis.psubscribe(pat, function(message, channel, pattern)
      got[#got + 1] = { message, channel, pattern }
    end))
    assert.equal(1, redis.publish(k("ps") .. ".a", "one"))
    assert.equal(1, redis.publish(k("ps") .. ".b", "two"))
    assert.equal(0, redis.publish(k("other") .. ".a", "not matched"))
    assert.truthy(h.wait_until(function() return #got == 2 end))
    table.sort(got, function(a, b) return a[1] < b[1] end)
    assert.same({ "one", k("ps") .. ".a", pat }, got[1])
    assert.same({ "two", k("ps") .. ".b", pat }, got[2])
    redis.punsubscribe(pat)
    assert.truthy(h.wait_until(function() return redis.publish(k("ps") .. ".c", "gone") == 0 end))
    assert.equal(2, #got)
  end)

  it("psubscribe by pid: {type='redis', channel=, message=, pattern=}; a channel and a pattern both deliver", function()
    local c = h.collector()
    local ch = k("both") .. ".x"
    assert.is_true(redis.psubscribe(k("both") .. ".?", c))
    assert.is_true(redis.subscribe(ch, c))
    assert.equal(2, redis.publish(ch, "m"))      -- the channel's and the pattern's
    h.wait_entries(c, 2)
    local by = {}
    for _, e in ipairs(h.entries(c)) do by[e.m.pattern or "channel"] = e.m end
    assert.same({ type = "redis", channel = ch, message = "m", pattern = k("both") .. ".?" },
                by[k("both") .. ".?"])
    assert.same({ type = "redis", channel = ch, message = "m" }, by.channel)
    -- the pattern and a channel of the same name are two subscriptions
    assert.is_true(redis.subscribe(k("both") .. ".?", c))
    assert.equal(2, redis.publish(k("both") .. ".?", "named like the pattern"))
    assert.is_true(redis.punsubscribe(k("both") .. ".?", c))
    assert.truthy(h.wait_until(function() return redis.publish(ch, "n") == 1 end))
    assert.equal(1, redis.publish(k("both") .. ".?", "the channel stays"))
    redis.unsubscribe(ch, c)
    redis.unsubscribe(k("both") .. ".?", c)
  end)

  it("psubscribe and punsubscribe check their arguments", function()
    assert.has_error(function() redis.psubscribe(k("x"), "not a pid") end)
    assert.has_error(function() redis.punsubscribe(k("x"), "not a pid") end)
  end)

  it("drops the subscription of an actor that died", function()
    local p = h.spawn("probe")
    local ch = k("dead")
    assert.is_true(h.eval(p, "return require('troupe.redis').subscribe(..., actor.self())", ch))
    actor.kill(p, "kill")
    assert.truthy(h.wait_dead(p))
    assert.truthy(h.wait_until(function() return redis.publish(ch, "anyone?") == 0 end))
  end)
end)

describe("troupe.redis configuration", function()
  it("selects the database of the URL", function()
    local key = k("db3")
    with_url("redis://" .. HOSTPORT .. "/3", function()
      assert.equal("OK", redis.call("SET", key, "in three"))
      assert.equal("in three", redis.call("GET", key))
    end)
    assert.is_nil(redis.call("GET", key))                          -- db 0
    with_url("redis://" .. HOSTPORT .. "/3", function()
      assert.equal("in three", redis.call("GET", key))
      redis.call("DEL", key)
    end)
  end)

  it("authenticates with the URL's user and password", function()
    local user = "troupe_spec_" .. math.random(1e6)
    assert.equal("OK", redis.call("ACL", "SETUSER", user, "on", ">s3cr%t", "~*", "&*", "+@all"))
    with_url(("redis://%s:s3cr%%25t@%s/2"):format(user, HOSTPORT), function()
      assert.equal(user, redis.call("ACL", "WHOAMI"))
      assert.equal("OK", redis.call("SET", k("acl"), "1"))
    end)
    with_url(("redis://%s:wrong@%s/0"):format(user, HOSTPORT), function()
      local v, err
      h.wait_until(function()
        v, err = redis.call("PING")
        return v == nil and err and err:find("not connected", 1, true)
      end, 3)
      assert.is_nil(v)
      assert.matches("AUTH refused: WRONGPASS", err)
    end)
    redis.call("ACL", "DELUSER", user)
  end)

  it("fails fast while the server cannot be reached, and recovers", function()
    with_url("redis://127.0.0.1:1/0", function()
      local v, err = redis.call("PING")          -- the first attempt may wait for connect()
      assert.is_nil(v)
      assert.matches("^redis: ", err)
      for _ = 1, 5 do
        local dt, r = h.timed(redis.call, "PING")
        assert.is_nil(r[1])
        assert.matches("^redis: not connected %(.*%); retrying$", r[2])
        assert.is_true(dt < 0.05, "took " .. dt)
      end
      assert.is_false(redis.connected())
    end)
    assert.equal("PONG", redis.call("PING"))
    assert.is_true(redis.connected())
  end)

  it("times out a command that gets no reply in time; the late reply is dropped", function()
    assert.equal("OK", redis.call("CLIENT", "PAUSE", 400))
    local dt, r = h.timed(redis.call, { timeout = 0.1 }, "ECHO", "late")
    assert.is_nil(r[1])
    assert.equal("redis: timed out after 100 ms", r[2])
    assert.is_true(dt >= 0.09 and dt < 0.35, "took " .. dt)
    assert.equal("after", redis.call("ECHO", "after"))     -- waits for the pause to end
    assert.same({ "a", "b" }, redis.pipeline({ { "ECHO", "a" }, { "ECHO", "b" } }))
  end)
end)

describe("troupe.redis misuse", function()
  it("raises on bad arguments and on commands that would break the shared connection", function()
    assert.has_error(function() redis.call() end)
    assert.has_error(function() redis.call(42) end)
    assert.has_error(function() redis.call("GET", {}) end)
    assert.has_error(function() redis.call("GET", true) end)
    assert.has_error(function() redis.call({ timeout = -1 }, "PING") end)
    assert.has_error(function() redis.pipeline({}) end)
    assert.has_error(function() redis.pipeline({ { "GET", "x" }, "GET" }) end)
    assert.has_error(function() redis.pipeline({ {} }) end)
    assert.has_error(function() redis.subscribe(k("x"), "not a pid") end)
    for _, url in ipairs({ "http://nope", "redis://h:99999", "redis://[::1", "redis://h/x",
                           "redis://%zz@h", "redis://h:12x" }) do
      assert.has_error(function() redis.configure({ url = url }) end, nil, url)
    end
    for _, cmd in ipairs({ "SUBSCRIBE", "multi", "EXEC", "SELECT", "MONITOR", "AUTH", "WATCH" }) do
      local ok, err = pcall(redis.call, cmd, "x")
      assert.is_false(ok)
      assert.matches("not allowed on the shared connection", err)
    end
    local ok, err = pcall(function() redis.call("SUBSCRIBE", "x") end)
    assert.is_false(ok)
    assert.matches("redis_spec.lua:%d+: troupe.redis: SUBSCRIBE", err)   -- the caller's line
  end)
end)
