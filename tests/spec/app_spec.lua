-- troupe.app through the test client: middleware, req, res, body limits, handlers that
-- yield, and the test client itself.
package.path = debug.getinfo(1, "S").source:match("^@(.-)[^/]*$") .. "?.lua;" .. package.path
local App = require "troupe.app"
local errors = require "troupe.errors"
local test = require "troupe.test"
local json = require "troupe.json"
local actor = require "troupe.actor"
local h = require "helpers"

local function new_app()
  return App.new({ log = false, env = "production" })
end

describe("middleware", function()
  it("runs in registration order, then the handler, then unwinds", function()
    local app, trail = new_app(), {}
    app:use(function(req, res, next)
      trail[#trail + 1] = "a in"
      local r = next()
      trail[#trail + 1] = "a out " .. tostring(res.status_code)
      return r
    end)
    app:use(function(req, res, next)
      trail[#trail + 1] = "b"
      return next()
    end)
    app:get("/x", function(req, res)
      trail[#trail + 1] = "handler"
      return res:status(201):json({})
    end)
    assert.equal(201, test.client(app):get("/x").status)
    assert.same({ "a in", "b", "handler", "a out 201" }, trail)
  end)

  it("can share data with the handler through req", function()
    local app = new_app()
    app:use(function(req, res, next)
      req.user = { name = "ann" }
      return next()
    end)
    app:get("/me", function(req, res) return res:json(req.user) end)
    assert.same({ name = "ann" }, test.client(app):get("/me").json())
  end)

  it("short-circuits by answering without next()", function()
    local app, reached = new_app(), false
    app:use(function(req, res) return res:status(403):json({ denied = true }) end)
    app:get("/x", function(req, res) reached = true; return res:json({}) end)
    local r = test.client(app):get("/x")
    assert.equal(403, r.status)
    assert.same({ denied = true }, r.json())
    assert.is_false(reached)
  end)

  it("next(err) skips to the error handler; the middleware around it goes on", function()
    local app, after, reached = new_app(), nil, false
    app:use(function(req, res, next)
      next()
      after = res.status_code
    end)
    app:use(function(req, res, next) return next(errors.new(418, "short and stout")) end)
    app:get("/x", function(req, res) reached = true; return res:json({}) end)
    local r = test.client(app):get("/x")
    assert.equal(418, r.status)
    assert.same({ success = false, error = "short and stout" }, r.json())
    assert.equal(418, after)
    assert.is_false(reached)
  end)

  it("next(err) with a plain value is a 500", function()
    local app = new_app()
    app:use(function(req, res, next) return next("db down") end)
    app:get("/x", function(req, res) return res:json({}) end)
    local r = test.client(app):get("/x")
    assert.equal(500, r.status)
    assert.same({ success = false, error = "Internal Server Error" }, r.json())
  end)

  it("may return an error instead of raising it", function()
    local app = new_app()
    app:use(function() return errors.new(401, "Login first") end)
    app:get("/x", function(req, res) return res:json({}) end)
    local r = test.client(app):get("/x")
    assert.equal(401, r.status)
    assert.equal("Login first", r.json().error)
  end)

  it("added after a route does not run for it, but does for unmatched paths", function()
    local app, ran = new_app(), {}
    app:get("/early", function(req, res) return res:json({}) end)
    app:use(function(req, res, next) ran[#ran + 1] = req.path; return next() end)
    app:get("/late", function(req, res) return res:json({}) end)
    local c = test.client(app)
    c:get("/early"); c:get("/late"); c:get("/none")
    assert.same({ "/late", "/none" }, ran)
  end)

  it("can answer unmatched paths itself, like express's last app.use", function()
    local app = new_app()
    app:get("/a", function(req, res) return res:json({}) end)
    app:use(function(req, res) return res:status(404):json({ custom = true }) end)
    local r = test.client(app):get("/b")
    assert.equal(404, r.status)
    assert.same({ custom = true }, r.json())
  end)

  it("given to a route runs for that route only", function()
    local app = new_app()
    local function auth(req, res, next)
      if req:header("x-key") ~= "k" then return errors.new(401) end
      return next()
    end
    app:get("/open", function(req, res) return res:json({}) end)
    app:get("/closed", auth, function(req, res) return res:json({ ok = true }) end)
    app:post("/opts", { body_limit = 10 }, auth, function(req, res) return res:json({}) end)
    local c = test.client(app)
    assert.equal(200, c:get("/open").status)
    assert.equal(401, c:get("/closed").status)
    assert.same({ ok = true }, c:get("/closed", { headers = { ["X-Key"] = "k" } }).json())
    assert.equal(401, c:post("/opts").status)
    assert.equal(10, app:_body_limit("POST", "/opts"))
  end)

  it("next() from a handler passes on (to a 404 when nothing else answers)", function()
    local app = new_app()
    app:get("/a", function(req, res, next) return next() end)
    assert.equal(404, test.client(app):get("/a").status)
    app:use(function(req, res) return res:send("fallback") end)
    assert.equal("fallback", test.client(app):get("/a").body)
  end)

  it("next(err) from a handler renders err", function()
    local app = new_app()
    app:get("/a", function(req, res, next) return next(errors.new(409, "Taken")) end)
    local r = test.client(app):get("/a")
    assert.equal(409, r.status)
    assert.equal("Taken", r.json().error)
  end)

  it("rejects what is neither a function nor an app", function()
    local app = new_app()
    assert.has_error(function() app:use(42) end, "app:use: expected a function or an app, got number")
    assert.has_error(function() app:use("/x") end, "app:use: a function or an app is needed")
    assert.has_error(function() app:use("x", function() end) end)
  end)
end)

describe("req", function()
  local function capture(fn)
    local app = new_app()
    local seen
    app:route("*", "/*", function(req, res)
      seen = fn(req)
      return res:json({})
    end)
    return test.client(app), function() return seen end
  end

  it("has method, path, ip, id and the body", function()
    local c, seen = capture(function(req)
      return { req.method, req.path, req.original_path, req.ip, req.id, req.body }
    end)
    c:post("/a/b?x=1", { body = "payload", ip = "10.0.0.9" })
    local s = seen()
    assert.same({ "POST", "/a/b", "/a/b", "10.0.0.9" }, { s[1], s[2], s[3], s[4] })
    assert.matches("^test%-%d+$", s[5])
    assert.equal("payload", s[6])
  end)

  it("decodes the query string like express's simple parser", function()
    local c, seen = capture(function(req) return req.query end)
    c:get("/q?a=1&b=x%20y&c&d=p+q&e=&=v&f=%zz")
    assert.same({ a = "1", b = "x y", c = "", d = "p q", e = "", [""] = "v", f = "%zz" }, seen())
    c:get("/q?a=1&a=2&a=3&k%5B%5D=v")
    assert.same({ a = { "1", "2", "3" }, ["k[]"] = "v" }, seen())
    c:get("/q")
    assert.same({}, seen())
    c:get("/q", { query = { n = 5, s = "a b&c" } })
    assert.same({ n = "5", s = "a b&c" }, seen())
  end)

  it("builds query and headers only when read", function()
    local c, seen = capture(function(req)
      local before = { rawget(req, "query"), rawget(req, "headers") }
      local _ = req.query.a, req.headers.host
      return { before[1], before[2], rawget(req, "query") ~= nil, rawget(req, "headers") ~= nil }
    end)
    c:get("/q?a=1")
    assert.same({ nil, nil, true, true }, seen())
  end)

  it("reads headers in any case", function()
    local c, seen = capture(function(req)
      return { req.headers["Content-Type"], req.headers["content-type"],
               req.headers["X-MiXeD"], req:header("CONTENT-TYPE"), req:get("x-mixed"),
               req.headers.absent }
    end)
    c:get("/h", { headers = { ["Content-Type"] = "text/x", ["x-mixed"] = "m" } })
    assert.same({ "text/x", "text/x", "m", "text/x", "m" }, seen())
  end)

  it("keeps header changes made by middleware visible to req:header", function()
    local app = new_app()
    app:use(function(req, res, next)
      req.headers["X-Added"] = "yes"
      return next()
    end)
    app:get("/", function(req, res) return res:send(req:header("x-added")) end)
    assert.equal("yes", test.client(app):get("/").body)
  end)

  it("json() decodes the body, and caches it", function()
    local c, seen = capture(function(req) return { req:json(), req:json() == req:json() } end)
    c:post("/j", { json = { a = { 1, 2 }, b = "x" } })
    assert.same({ { a = { 1, 2 }, b = "x" }, true }, seen())
  end)

  it("json() raises an HTTP 400 for a body that is not JSON, or none", function()
    local app = new_app()
    app:post("/j", function(req, res) return res:json(req:json()) end)
    local c = test.client(app)
    local r = c:post("/j", { body = "{not json" })
    assert.equal(400, r.status)
    assert.is_false(r.json().success)
    assert.matches("^Invalid JSON body: ", r.json().error)
    r = c:post("/j")
    assert.equal(400, r.status)
    assert.equal("Invalid JSON body: the body is empty", r.json().error)
  end)
end)

describe("res", function()
  local function serve(handler, method, opts)
    local app = new_app()
    app:route("*", "/", handler)
    return test.client(app):request(method or "GET", "/", opts)
  end

  it("status() and header() chain", function()
    local r = serve(function(req, res)
      return res:status(202):header("X-One", "1"):header("x-two", 2):json({ ok = true })
    end)
    assert.equal(202, r.status)
    assert.equal("1", r.headers["x-one"])
    assert.equal("2", r.headers["x-two"])
    assert.same({ ok = true }, r.json())
  end)

  it("json() sends application/json", function()
    local r = serve(function(req, res) return res:json({ list = json.array({}), n = 1.5 }) end)
    assert.equal(200, r.status)
    assert.matches("^application/json", r.headers["content-type"])
    assert.equal(1.5, r.json().n)
    assert.matches('"list":%[%]', r.body)
  end)

  it("json() keeps a Content-Type that was set", function()
    local r = serve(function(req, res)
      return res:header("Content-Type", "application/problem+json"):json({ a = 1 })
    end)
    assert.equal("application/problem+json", r.headers["content-type"])
    assert.same({ a = 1 }, r.json())
  end)

  it("send() sends text/html by default, a table as JSON", function()
    local r = serve(function(req, res) return res:send("<p>hi</p>") end)
    assert.equal("text/html; charset=utf-8", r.headers["content-type"])
    assert.equal("<p>hi</p>", r.body)
    r = serve(function(req, res) return res:header("content-type", "text/csv"):send("a,b") end)
    assert.equal("text/csv", r.headers["content-type"])
    r = serve(function(req, res) return res:send({ a = 1 }) end)
    assert.matches("^application/json", r.headers["content-type"])
    assert.same({ a = 1 }, r.json())
    r = serve(function(req, res) return res:status(204):send() end)
    assert.equal(204, r.status)
    assert.equal("", r.body)
    assert.is_nil(r.headers["content-type"])
    r = serve(function(req, res) return res:text("plain") end)
    assert.equal("text/plain; charset=utf-8", r.headers["content-type"])
    r = serve(function(req, res) return res:send_status(202) end)
    assert.equal(202, r.status)
    assert.equal("Accepted", r.body)
  end)

  it("redirect() answers 302 with Location, or the code given", function()
    local r = serve(function(req, res) return res:redirect("/login") end)
    assert.equal(302, r.status)
    assert.equal("/login", r.headers.location)
    assert.equal("Found. Redirecting to /login", r.body)
    r = serve(function(req, res) return res:redirect("https://x.example/", 301) end)
    assert.equal(301, r.status)
    assert.equal("https://x.example/", r.headers.location)
    r = serve(function(req, res) return res:redirect(307, "/tmp") end)
    assert.equal(307, r.status)
    assert.equal("/tmp", r.headers.location)
  end)

  it("write() streams chunks; the framework ends the stream", function()
    local r = serve(function(req, res)
      res:status(201):header("content-type", "text/plain")
      res:write("one,")
      res:write("")
      res:write("two,")
      res:write(3)
    end)
    assert.equal(201, r.status)
    assert.equal("text/plain", r.headers["content-type"])
    assert.equal("chunked", r.headers["transfer-encoding"])
    assert.same({ "one,", "two,", "3" }, r.chunks)
    assert.equal("one,two,3", r.body)
    assert.is_true(r.finished)
  end)

  it("finish() ends a stream early, or sends an empty response", function()
    local r = serve(function(req, res)
      res:write("a")
      res:finish()
      return res:finish()
    end)
    assert.equal("a", r.body)
    assert.is_true(r.finished)
    r = serve(function(req, res) return res:status(202):finish() end)
    assert.equal(202, r.status)
    assert.equal("", r.body)
  end)

  it("refuses a second response: 'response already sent'", function()
    local errs = {}
    local r = serve(function(req, res)
      res:json({ first = true })
      for _, f in ipairs({
        function() res:json({ second = true }) end,
        function() res:send("again") end,
        function() res:write("late") end,
        function() res:redirect("/") end,
        function() res:header("x", "y") end,
      }) do
        local ok, err = pcall(f)
        errs[#errs + 1] = not ok and err:match("response already sent") or tostring(err)
      end
    end)
    assert.same({ first = true }, r.json())
    for _, e in ipairs(errs) do assert.equal("response already sent", e) end
    r = serve(function(req, res)
      res:write("streaming")
      local ok, err = pcall(res.json, res, {})
      res:write(ok and "no error" or err:match("response already sent"))
    end)
    assert.equal("streamingresponse already sent", r.body)
  end)

  it("an uncaught second send is logged; the first response stands", function()
    local logged = {}
    local app = App.new({ log = function(msg) logged[#logged + 1] = msg end })
    app:get("/", function(req, res)
      res:json({ first = true })
      res:json({ second = true })
    end)
    local r = test.client(app):get("/")
    assert.equal(200, r.status)
    assert.same({ first = true }, r.json())
    assert.equal(1, #logged)
    assert.matches("response already sent %(after the response was sent%)", logged[1])
  end)

  it("append() builds repeated headers; get_header() reads them back", function()
    local r = serve(function(req, res)
      res:append("Set-Cookie", "a=1"):append("set-cookie", "b=2")
      res:header("x-list", { "p", "q" })
      res:header("x-gone", "1"):header("x-gone", nil)
      return res:send(tostring(res:get_header("SET-COOKIE")[2]))
    end)
    assert.same({ "a=1", "b=2" }, r.headers["set-cookie"])
    assert.same({ "p", "q" }, r.headers["x-list"])
    assert.is_nil(r.headers["x-gone"])
    assert.equal("b=2", r.body)
  end)

  it("checks its arguments", function()
    local errs = {}
    serve(function(req, res)
      for _, f in ipairs({
        function() res:status(99) end,
        function() res:status("200") end,
        function() res:header(1, "x") end,
        function() res:header("x", print) end,
        function() res:send(print) end,
        function() res:write({}) end,
        function() res:redirect({}) end,
      }) do
        errs[#errs + 1] = (pcall(f))
      end
      return res:send("")
    end)
    assert.same({ false, false, false, false, false, false, false }, errs)
  end)

  it("a handler that sends nothing gets a 500", function()
    local logged
    local app = App.new({ log = function(msg) logged = msg end })
    app:get("/", function() end)
    local r = test.client(app):get("/")
    assert.equal(500, r.status)
    assert.same({ success = false, error = "Internal Server Error" }, r.json())
    assert.matches("without sending a response", logged)
  end)
end)

describe("body limits", function()
  it("_body_limit gives the route's body_limit, else the app's, else nil", function()
    local app = new_app()
    app:post("/upload", { body_limit = 10 * 1024 * 1024 }, function(req, res) return res:json({}) end)
    app:put("/files/:name", { body_limit = 5 }, function(req, res) return res:json({}) end)
    app:post("/small", function(req, res) return res:json({}) end)
    assert.equal(10 * 1024 * 1024, app:_body_limit("POST", "/upload"))
    assert.equal(10 * 1024 * 1024, app:_body_limit("POST", "/upload/?x=1"))
    assert.equal(5, app:_body_limit("PUT", "/files/a.txt"))
    assert.is_nil(app:_body_limit("POST", "/small"))
    assert.is_nil(app:_body_limit("POST", "/nowhere"))
    assert.is_nil(app:_body_limit("GET", "/upload"))
    app.body_limit = 100
    assert.equal(100, app:_body_limit("POST", "/small"))
    assert.equal(5, app:_body_limit("PUT", "/files/a.txt"))
  end)

  it("reaches routes of mounted apps, with their app's default", function()
    local api = App.new({ body_limit = 7 })
    api:post("/big", { body_limit = 1 }, function(req, res) return res:json({}) end)
    api:post("/other", function(req, res) return res:json({}) end)
    local app = new_app()
    app:use("/api", api)
    assert.equal(1, app:_body_limit("POST", "/api/big"))
    assert.equal(7, app:_body_limit("POST", "/api/other"))   -- the mounted app's own
  end)

  it("is enforced by the test client as by the server (413)", function()
    local app = new_app()
    app:post("/tiny", { body_limit = 4 }, function(req, res) return res:send(req.body) end)
    local c = test.client(app)
    assert.equal("1234", c:post("/tiny", { body = "1234" }).body)
    local r = c:post("/tiny", { body = "12345" })
    assert.equal(413, r.status)
    assert.is_false(r.json().success)
  end)

  it("rejects a body_limit that is not a byte count", function()
    local app = new_app()
    local ok = function() end
    assert.has_error(function() app:post("/x", { body_limit = -1 }, ok) end)
    assert.has_error(function() app:post("/x", { body_limit = 1.5 }, ok) end)
  end)
end)

describe("handlers that yield", function()
  it("may sleep and call actors, in production and in development", function()
    local echo = h.spawn("echo")
    for _, env in ipairs({ "production", "development" }) do
      local app = App.new({ log = false, env = env })
      app:get("/work", function(req, res)
        local yieldable = coroutine.isyieldable()
        actor.sleep(0.02)
        local answer = actor.call(echo, { n = tonumber(req.query.n) }, 2)
        return res:json({ yieldable = yieldable, answer = answer })
      end)
      local dt, got = h.timed(function() return test.client(app):get("/work?n=7") end)
      local r = got[1]
      assert.equal(200, r.status)
      assert.same({ yieldable = true, answer = { n = 7 } }, r.json())
      assert.is_true(dt >= 0.015, "took " .. dt)
    end
  end)

  it("let other requests go on in the same sandboxed VM", function()
    local probe = h.spawn("probe")
    local c = h.collector()
    h.eval(probe, [[
      local dir = ...
      package.path = dir .. "?.lua;" .. package.path
      state.client = require("troupe.test").client(dofile(dir .. "apps/site.lua"))
    ]], h.dir)
    -- a slow request in flight (its handler sleeps)...
    actor.send(probe, { op = "eval", code = [[
      local c = ...
      local r = state.client:get("/slow?s=0.3")
      actor.send(c, { status = r.status, body = r.json() })
    ]], args = { c, n = 1 } })
    -- ...while fast ones complete
    local t0 = actor.now()
    local fast = h.eval(probe, [[
      local r = state.client:get("/json")
      return { status = r.status, body = r.json() }
    ]])
    assert.is_true(actor.now() - t0 < 0.2, "a fast request waited for the slow one")
    assert.same({ status = 200, body = { message = "Hello, World!" } }, fast)
    assert.equal(0, #h.messages(c))
    local got = h.wait_entries(c, 1)[1].m
    assert.equal(200, got.status)
    assert.is_true(got.body.slept)
  end)

  it("keep yielding in development mode inside the sandbox", function()
    local probe = h.spawn("probe")
    local r = h.eval(probe, [[
      local App = require "troupe.app"
      local app = App.new({ env = "development", log = false })
      app:get("/", function(req, res)
        actor.sleep(0.01)
        error("after sleeping")
      end)
      local r = require("troupe.test").client(app):get("/")
      return { status = r.status, body = r.json() }
    ]])
    assert.equal(500, r.status)
    assert.matches("after sleeping", r.body.message)
    -- the traceback needs an xpcall that can yield (the sandbox's wraps it in a C call)
    assert.is_true(r.body.stack == nil or r.body.stack:match("after sleeping") ~= nil)
  end)
end)

describe("the test client", function()
  it("sends query tables, json bodies and default headers", function()
    local app = new_app()
    app:post("/echo", function(req, res)
      return res:json({ query = req.query, ct = req:header("content-type"),
                        token = req:header("authorization"), body = req:json(),
                        len = req:header("content-length") })
    end)
    local c = test.client(app, { headers = { Authorization = "Bearer t" } })
    local r = c:post("/echo?x=1", { query = { y = { "a", "b" }, flag = true }, json = { v = 1 } })
    local body = r.json()
    assert.same({ x = "1", y = { "a", "b" }, flag = "" }, body.query)
    assert.equal("application/json", body.ct)
    assert.equal("Bearer t", body.token)
    assert.same({ v = 1 }, body.body)
    assert.equal(tostring(#'{"v":1}'), body.len)
    assert.equal(r.headers["x-request-id"], r.headers["x-request-id"])
    assert.has_error(function() c:post("/echo", { body = "x", json = {} }) end)
  end)

  it("reports an error that escaped the app as the server would: a 500", function()
    local app = new_app()
    app._handle = function() error("escaped") end
    local r = test.client(app):get("/")
    assert.equal(500, r.status)
    assert.matches("escaped", r.error)
  end)

  it("refuses what is not an app", function()
    assert.has_error(function() test.client({}) end)
  end)
end)

describe("_serve", function()
  it("is the C server's entry point, over troupe.http", function()
    local app = new_app()
    assert.is_function(app._serve)
    assert.is_function(app._body_limit)
    local ok, http = pcall(require, "troupe.http")
    if ok then
      for _, f in ipairs({ "header", "headers", "respond", "respond_json", "write", "finish", "sent" }) do
        assert.is_function(http[f], f)
        assert.is_function(test.transport[f], f)
      end
    end
  end)
end)
