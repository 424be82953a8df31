-- troupe.app: routes, middleware and error handling for HTTP handlers, express-style.
--
--   local app = require("troupe.app").new()
--   app:use(function(req, res, next) return next() end)
--   app:get("/users/:id", function(req, res) return res:json({ id = req.params.id }) end)
--   app:post("/upload", { body_limit = 10 * 1024 * 1024 }, upload)
--   app:use("/api", api)                       -- a sub-app under a prefix
--   app:on_error(function(err, req, res) ... end)
--   return app
--
-- The C server calls app:_serve(h, method, path, query_string, body, ip, id) for each
-- request, in a coroutine of its own, and app:_body_limit(method, path) before it reads
-- a body. _serve answers through the transport module troupe.http; the test client
-- (troupe.test) passes a Lua transport with the same functions to app:_handle.
--
-- How a request runs: the route is looked up first (static routes by one hash lookup,
-- the others in a segment trie: troupe.router). Then the middleware registered before
-- that route (express's order: a route only sees the middleware added before it) runs
-- as a chain of next() calls, then the handler. Without a route, every middleware runs,
-- then the 404/405 answer. Each step runs under pcall, so an error (raised, returned
-- as an errors.new value, or passed to next(err)) is rendered at once by the error
-- handler and the middleware around it goes on, as in express. Handlers may yield
-- (actor.call, actor.sleep, database calls): nothing here runs them in a coroutine of
-- its own, and Lua 5.4 yields across pcall.
local errors = require "troupe.errors"
local router = require "troupe.router"

local HttpError = errors.HttpError
local find_route, decode, check_path = router.find, router.decode, router.check
local setmetatable, getmetatable, rawget, rawset = setmetatable, getmetatable, rawget, rawset
local pcall, xpcall, error, type, tostring, pairs, ipairs =
  pcall, xpcall, error, type, tostring, pairs, ipairs
local byte, sub, lower, upper, find, gsub, char, format =
  string.byte, string.sub, string.lower, string.upper, string.find, string.gsub,
  string.char, string.format
local isyieldable = coroutine.isyieldable
local traceback = debug and debug.traceback

local HTML = "text/html; charset=utf-8"
local TEXT = "text/plain; charset=utf-8"
local JSON = "application/json; charset=utf-8"

-- Modules loaded on first use: troupe.json and troupe.http are C modules of the host.
local json, http

local function json_module()
  json = json or require "troupe.json"
  return json
end

local M = {}

local App = {}
App.__index = App
M.App = App

-- ---- requests ---------------------------------------------------------------

local Req = {}            -- methods of req
local lazy = {}           -- req fields built on first read
M.Req = Req

-- Header tables: the transport gives lowercase names; any spelling reads them.
local Headers = {
  __index = function(t, k)
    if type(k) == "string" then
      local l = lower(k)
      if l ~= k then return rawget(t, l) end
    end
    return nil
  end,
  __newindex = function(t, k, v)
    if type(k) == "string" then k = lower(k) end
    rawset(t, k, v)
  end,
}

local function hex(h) return char(tonumber(h, 16)) end

-- Decodes a query-string component like node's querystring: '+' is a space, a
-- malformed escape stays as it is.
local function unescape(s)
  if find(s, "+", 1, true) then s = gsub(s, "+", " ") end
  if find(s, "%", 1, true) then s = gsub(s, "%%(%x%x)", hex) end
  return s
end

local MAX_QUERY_KEYS = 1000   -- node's querystring default

-- "a=1&b=x%20y&c&a=2" -> { a = { "1", "2" }, b = "x y", c = "" }: express's "simple"
-- parser (node's querystring): a repeated key gives an array of its values in order.
local function parse_query(qs)
  local q = {}
  if qs == nil or qs == "" then return q end
  local count = 0
  for pair in string.gmatch(qs, "[^&]+") do
    count = count + 1
    if count > MAX_QUERY_KEYS then break end
    local k, v
    local eq = find(pair, "=", 1, true)
    if eq then
      k, v = unescape(sub(pair, 1, eq - 1)), unescape(sub(pair, eq + 1))
    else
      k, v = unescape(pair), ""
    end
    local old = q[k]
    if old == nil then
      q[k] = v
    elseif type(old) == "table" then
      old[#old + 1] = v
    else
      q[k] = { old, v }
    end
  end
  return q
end
M.parse_query = parse_query

function lazy.query(req)
  return parse_query(rawget(req, "_qs"))
end

function lazy.headers(req)
  local res = rawget(req, "_res")
  return setmetatable(res._t.headers(res._h), Headers)
end

function lazy.params()
  return {}
end

-- The matched route's pattern ("/users/:id"), e.g. for metrics labels.
function lazy.route(req)
  local route = rawget(req, "_res")._route
  return route and route.path or false
end

-- The whole path; req.path is relative to the mount point of the running layer.
function lazy.original_path(req)
  return rawget(req, "path")
end

Req.base_path = ""     -- the mount point of the running layer ("" at the top)

Req.__index = function(req, k)
  local v = Req[k]
  if v ~= nil then return v end
  local build = lazy[k]
  if build then
    v = build(req)
    rawset(req, k, v)
    return v
  end
  return nil
end

-- The value of request header name (any case), or nil.
function Req:header(name)
  local headers = rawget(self, "headers")
  if headers then return headers[name] end
  local res = rawget(self, "_res")
  return res._t.header(res._h, name)
end
Req.get = Req.header

-- The body decoded as JSON (cached). Raises an HTTP 400 error when it is missing or
-- is not valid JSON.
function Req:json()
  local v = rawget(self, "_json")
  if v ~= nil then return v end
  local body = self.body
  if body == nil or body == "" then
    error(errors.new(400, "Invalid JSON body: the body is empty"), 0)
  end
  local err
  v, err = json_module().decode(body)
  if v == nil then
    error(errors.new(400, "Invalid JSON body: " .. tostring(err)), 0)
  end
  rawset(self, "_json", v)
  return v
end

-- ---- responses --------------------------------------------------------------

local Res = {}
Res.__index = Res
M.Res = Res

local function check_code(code, level)
  if math.type(code) ~= "integer" or code < 100 or code > 599 then
    error("res:status: status must be an integer from 100 to 599, got " .. tostring(code),
          level + 1)
  end
end

local function already_sent(level)
  error("response already sent", level + 1)
end

-- Sets the status (chainable).
function Res:status(code)
  check_code(code, 2)
  self.status_code = code
  return self
end

local function header_value(v, level)
  local tv = type(v)
  if tv == "string" or tv == "nil" then return v end
  if tv == "number" or tv == "boolean" then return tostring(v) end
  if tv == "table" then
    local out = {}
    for i, s in ipairs(v) do
      if type(s) ~= "string" then s = tostring(s) end
      out[i] = s
    end
    return out
  end
  error("res:header: a value must be a string, a number or an array of strings", level + 1)
end

-- Sets response header name to value (a string, number, or an array of strings for a
-- repeated header such as set-cookie); nil removes it. Chainable. Names are case-
-- insensitive (kept lowercase).
function Res:header(name, value)
  if self.sent then already_sent(2) end
  if type(name) ~= "string" then error("res:header: the name must be a string", 2) end
  name = lower(name)
  value = header_value(value, 2)
  if name == "content-type" then
    self._ctype = value
    return self
  end
  local headers = self._headers
  if headers == nil then
    if value == nil then return self end
    headers = {}
    self._headers = headers
  end
  headers[name] = value
  return self
end
Res.set = Res.header

-- Adds a value to header name (a repeated header, e.g. set-cookie). Chainable.
function Res:append(name, value)
  if self.sent then already_sent(2) end
  local old = self:get_header(name)
  if old == nil then return self:header(name, value) end
  local list = type(old) == "table" and { table.unpack(old) } or { old }
  value = header_value(value, 2)
  if type(value) == "table" then
    for _, v in ipairs(value) do list[#list + 1] = v end
  else
    list[#list + 1] = value
  end
  return self:header(name, list)
end

-- The value set for response header name, or nil.
function Res:get_header(name)
  name = lower(name)
  if name == "content-type" then return self._ctype end
  local headers = self._headers
  return headers and headers[name]
end

-- Sends value encoded as JSON.
function Res:json(value)
  if self.sent then already_sent(2) end
  local t = self._t
  local respond_json = t.respond_json
  local ok, err
  if respond_json and self._ctype == nil then
    ok, err = respond_json(self._h, self.status_code, value, self._headers)
  else
    ok, err = t.respond(self._h, self.status_code, (json or json_module()).encode(value),
                        self._ctype or JSON, self._headers)
  end
  self.sent = true
  return ok, err
end

-- Sends body: a string (Content-Type text/html; charset=utf-8 unless one was set), a
-- number (as text), nil (an empty body) or a table or boolean (as JSON).
function Res:send(body)
  local tb = type(body)
  if tb == "string" or tb == "nil" or tb == "number" then
    if self.sent then already_sent(2) end
    local ctype = self._ctype
    if body == nil then
      body = ""
    else
      if tb == "number" then body = tostring(body) end
      ctype = ctype or HTML
    end
    local ok, err = self._t.respond(self._h, self.status_code, body, ctype, self._headers)
    self.sent = true
    return ok, err
  end
  if tb == "function" or tb == "thread" then
    error("res:send: cannot send a " .. tb, 2)
  end
  return self:json(body)
end

-- Sends text as text/plain; charset=utf-8 (unless a Content-Type was set).
function Res:text(body)
  if self._ctype == nil then self._ctype = TEXT end
  return self:send(body)
end

-- Sends status with its reason phrase as a text body.
function Res:send_status(code)
  check_code(code, 2)
  self.status_code = code
  if self._ctype == nil then self._ctype = TEXT end
  return self:send(errors.reason(code))
end

-- Redirects to url with code (default 302). res:redirect(301, url) also works.
function Res:redirect(url, code)
  if type(url) == "number" then url, code = code, url end
  if type(url) ~= "string" then error("res:redirect: the url must be a string", 2) end
  code = code or 302
  check_code(code, 2)
  if self.sent then already_sent(2) end
  self.status_code = code
  self:header("location", url)
  if self._ctype == nil then self._ctype = TEXT end
  return self:send(errors.reason(code) .. ". Redirecting to " .. url)
end

-- Streams chunk (chunked transfer encoding). The first call sends the status and
-- headers; the stream ends with res:finish() or when the handler returns.
function Res:write(chunk)
  if type(chunk) ~= "string" then
    if type(chunk) ~= "number" then error("res:write: a chunk must be a string", 2) end
    chunk = tostring(chunk)
  end
  local stream = self._stream
  if stream == "open" then
    if chunk == "" then return true end
    return self._t.write(self._h, chunk)
  end
  if self.sent then already_sent(2) end
  local ok, err = self._t.write(self._h, chunk, self.status_code, self._ctype or HTML,
                                self._headers)
  self._stream = "open"
  self.sent = true
  return ok, err
end

-- Ends the response: finishes a stream, or sends an empty body when nothing was
-- sent yet; does nothing after a complete response.
function Res:finish()
  local stream = self._stream
  if stream == "open" then
    self._stream = "done"
    return self._t.finish(self._h)
  end
  if self.sent then return true end
  return self:send()
end

-- ---- errors -----------------------------------------------------------------

local compile   -- the app's routes and middleware as one table (below)

local Traced = {}   -- an error value caught with its traceback (development only)

local PASS = setmetatable({}, { __tostring = function() return "next() from a handler" end })

-- The message handler of xpcall in development: keeps HTTP errors as they are and
-- takes the traceback of any other error where it was raised.
local function traced(e)
  if e == PASS or getmetatable(e) == HttpError or traceback == nil then return e end
  return setmetatable({ cause = e, stack = traceback(tostring(e), 2) }, Traced)
end

-- Whether xpcall keeps the coroutine yieldable here (the sandbox's xpcall wrapper
-- does not): nil until known. Only then is xpcall used, so that a handler may always
-- yield; elsewhere development errors carry the message without a traceback.
local xpcall_yields

local function can_trace()
  if xpcall_yields == nil then
    if not isyieldable() then return false end
    local ok, yes = xpcall(isyieldable, traced)
    xpcall_yields = ok and yes or false
  end
  return xpcall_yields
end

local function default_log(msg)
  if io and io.stderr then
    io.stderr:write("troupe: ", msg, "\n")
  else
    print("troupe: " .. msg)
  end
end

-- Logs an unexpected error through app.log (a function(msg, err, req), or false for
-- silence), by default on stderr.
local function log_error(app, req, e, note)
  local sink = app.log
  if sink == false then return end
  local cause = e.internal and e.cause or e
  local msg = format("%s %s %s: %s%s", tostring(req.id), tostring(req.method),
                     tostring(req.original_path), tostring(cause), note or "")
  if e.stack then msg = msg .. "\n" .. e.stack end
  if type(sink) == "function" then
    pcall(sink, msg, e, req)
  else
    default_log(msg)
  end
end

-- The default error handler: {"success":false,"error":message} (with code and
-- details when set; with the original message and its traceback in development).
local function default_error(err, req, res)
  local body = { success = false, error = err.message }
  if err.code ~= nil then body.code = err.code end
  if err.details ~= nil then body.details = err.details end
  if err.internal and res._app.env == "development" then
    body.message = tostring(err.cause)
    body.stack = err.stack     -- nil where xpcall cannot yield (then only the message)
  end
  local headers = err.headers
  if headers then
    for k, v in pairs(headers) do res:header(k, v) end
  end
  res._ctype = nil
  res.status_code = err.status
  return res:json(body)
end
M.default_error = default_error

-- A fixed body for when rendering the error failed too.
local LAST_RESORT = '{"success":false,"error":"Internal Server Error"}'

local function normalize(err)
  local mt = getmetatable(err)
  if mt == HttpError then return err end
  if mt == Traced then return errors.internal(err.cause, err.stack) end
  return errors.internal(err)
end

-- Renders err (any error value) with the error handler of the running layer, unless
-- a response has already gone out (then it is only logged).
local function fail(req, res, err)
  local e = normalize(err)
  local app = res._app
  if res.sent then
    log_error(app, req, e, " (after the response was sent)")
    return
  end
  if e.internal then log_error(app, req, e) end
  -- res._on_error: the running layer's handler (false: none); nil on the fast path
  -- of _handle, where only the route ran
  local handler = res._on_error
  if handler == nil then handler = res._route.on_error end
  if handler then
    local ok, herr = pcall(handler, e, req, res)
    if res.sent then return end
    if not ok then
      e = normalize(herr)
      log_error(app, req, e, " (in the error handler)")
    end
  end
  local ok, herr = pcall(default_error, e, req, res)
  if not ok and not res.sent then
    log_error(app, req, normalize(herr), " (rendering an error)")
    res._t.respond(res._h, 500, LAST_RESORT, "application/json", nil)
    res.sent = true
  end
end

-- ---- dispatch -----------------------------------------------------------------
-- Per-request state lives in res (a miss there is a plain table lookup, where req's
-- lazy fields make one a function call): _app, _route, and for a chain _list (the
-- layers), _ci (the last one run), _stop, _pending (the route to run at the end of
-- the list), _ended (the 404 ran), _next, _on_error.

local step   -- runs the next layer of a request (below)

local function compiled(app)
  return app._compiled or compile(app)
end

-- Calls fn(req, res, nxt) protected; renders what it raises or returns as an error.
local function invoke(req, res, fn, nxt)
  local ok, r
  if res._app.env == "development" and can_trace() then
    ok, r = xpcall(fn, traced, req, res, nxt)
  else
    ok, r = pcall(fn, req, res, nxt)
  end
  if ok then
    if r ~= nil and getmetatable(r) == HttpError then return fail(req, res, r) end
    return r
  end
  if r == PASS then
    if res._list == nil then   -- the fast path of _handle set up no chain
      res._list, res._ci, res._stop, res._pending, res._ended = compiled(res._app).list, 0, 0,
        false, false
    end
    return step(req, res)
  end
  return fail(req, res, r)
end

-- The `next` of a handler when the request has no middleware chain: next(err) raises
-- err, next() raises PASS, both caught by invoke.
local function pass_next(err)
  if err ~= nil then error(err, 0) end
  error(PASS, 0)
end

-- Whether path is prefix or under it ("/admin", "/admin/x"; not "/administrator").
local function under(path, prefix, ci)
  local n = #prefix
  local c = byte(path, n + 1)
  if c ~= nil and c ~= 47 then return false end
  local head = sub(path, 1, n)
  return head == prefix or (ci and lower(head) == prefix)
end

local function full_path(req)
  return rawget(req, "original_path") or rawget(req, "path")
end

-- Sets req.path and req.base_path for a layer mounted at base ("" at the top).
local function enter(req, base)
  local full = rawget(req, "original_path")
  if base == "" then
    if full and rawget(req, "base_path") ~= "" then
      req.base_path = ""
      req.path = full
    end
    return
  end
  if full == nil then
    full = req.path
    req.original_path = full
  end
  local n = #base
  req.base_path = sub(full, 1, n)
  local rest = sub(full, n + 1)
  req.path = rest == "" and "/" or rest
end

-- The end of every chain without a route (or whose handler called next()): OPTIONS
-- gets the Allow list, a path known with other methods 405, anything else 404.
local function not_found(req, res)
  if res._route then return errors.new(404) end   -- its handler passed
  local allow = router.allowed(compiled(res._app).router, full_path(req))
  if allow then
    if req.method == "OPTIONS" then
      res:header("allow", allow)
      res.status_code = 204
      return res:send()
    end
    local e = errors.new(405)
    e.headers = { allow = allow }
    return e
  end
  return errors.new(404)
end

step = function(req, res)
  local list, i, stop = res._list, res._ci, res._stop
  while i < stop do
    i = i + 1
    local layer = list[i]
    local check = layer.check
    if check == nil or under(full_path(req), check, layer.ci) then
      res._ci = i
      enter(req, layer.base)
      res._on_error = layer.on_error
      return invoke(req, res, layer.fn, res._next)
    end
  end
  res._ci = stop
  local route = res._pending
  if route then
    -- a next() from the handler goes on with the middleware added after the route
    local c = compiled(res._app)
    res._pending = false
    res._list, res._ci, res._stop = c.list, route.pos, c.nlist
    enter(req, route.base)
    res._on_error = route.on_error
    return invoke(req, res, route.fn, res._next or pass_next)
  end
  if res._ended then return end
  res._ended = true
  enter(req, "")
  res._on_error = res._app._on_error or false
  return invoke(req, res, not_found, pass_next)
end

-- A route whose parameter could not be decoded: a 400 from where the handler was.
local function bad_param(route, name)
  local e = errors.new(400, format("Failed to decode param '%s'", name))
  return setmetatable({ fn = function() return e end }, { __index = route })
end

local function finish(req, res)
  if res._stream == "open" then
    res._stream = "done"
    res._t.finish(res._h)
  elseif not res.sent then
    fail(req, res, errors.internal("the handler returned without sending a response"))
  end
end

-- ---- the app ------------------------------------------------------------------

-- Handles one request through transport t (troupe.http's functions, or the test
-- client's): the body of _serve.
function App:_handle(t, h, method, path, qs, body, ip, id)
  local c = self._compiled or compile(self)
  local route, vals = find_route(c.router, method, path)
  local params
  if vals then
    local names = route.names
    params = {}
    for i = 1, #names do
      local v = decode(vals[i])
      if v == nil then
        route = bad_param(route, names[i])
        v = vals[i]
      end
      params[names[i]] = v
    end
  end
  local res
  if route and route.nchain == 0 and c.nlist == 0 then
    -- no middleware anywhere: straight to the handler
    res = setmetatable({ _t = t, _h = h, status_code = 200, sent = false, _app = self,
                         _route = route }, Res)
  else
    res = setmetatable({ _t = t, _h = h, status_code = 200, sent = false, _app = self,
                         _route = route or false, _list = route and route.chain or c.list,
                         _ci = 0, _stop = route and route.nchain or c.nlist,
                         _pending = route or false, _ended = false, _next = false,
                         _on_error = false }, Res)
  end
  local req = setmetatable({
    method = method, path = path, body = body, ip = ip, id = id, params = params,
    _qs = qs, _res = res,
  }, Req)
  if res._list == nil then
    if route.base ~= "" then enter(req, route.base) end
    invoke(req, res, route.fn, pass_next)
  else
    res._next = function(err)
      if err ~= nil then return fail(req, res, err) end
      return step(req, res)
    end
    step(req, res)
  end
  return finish(req, res)
end

-- The C server's entry point: one request (see the file's head).
function App:_serve(h, method, path, query_string, body, ip, id)
  if http == nil then http = require "troupe.http" end
  return self:_handle(http, h, method, path, query_string, body, ip, id)
end

-- The body limit (bytes) of the route method and path would reach, or nil for the
-- server's default. Called by the C server before it reads a request body.
function App:_body_limit(method, path)
  local c = self._compiled or compile(self)
  local q = find(path, "?", 1, true)
  if q then path = sub(path, 1, q - 1) end
  local route = find_route(c.router, method, path)
  return route and route.body_limit or self.body_limit
end

-- Marks app and every app it is mounted in for recompiling.
local function invalidate(app, seen)
  app._compiled = nil
  for parent in pairs(app._parents) do
    seen = seen or {}
    if not seen[parent] then
      seen[parent] = true
      invalidate(parent, seen)
    end
  end
end

local function add_layer(self, layer)
  local stack = self._stack
  stack[#stack + 1] = layer
  invalidate(self)
end

local function is_app(v)
  return type(v) == "table" and getmetatable(v) == App
end

-- app:use([prefix,] fn_or_app, ...): middleware fn(req, res, next), for every path or
-- only under prefix; an app mounted under prefix (it sees paths relative to it, and
-- req.base_path is the prefix).
function App:use(first, ...)
  local prefix, i, args = "", 1, table.pack(first, ...)
  if type(first) == "string" then
    prefix = check_path(first, "a prefix", 2)
    if prefix == "/" then prefix = "" end
    i = 2
  end
  if i > args.n then error("app:use: a function or an app is needed", 2) end
  for k = i, args.n do
    local v = args[k]
    if is_app(v) then
      if v == self then error("app:use: an app cannot be mounted in itself", 2) end
      v._parents[self] = true
      add_layer(self, { kind = "app", prefix = prefix, app = v })
    elseif type(v) == "function" then
      add_layer(self, { kind = "mw", prefix = prefix, fn = v })
    else
      error("app:use: expected a function or an app, got " .. type(v), 2)
    end
  end
  return self
end

local function check_opts(opts, level)
  local limit = opts.body_limit
  if limit ~= nil and (math.type(limit) ~= "integer" or limit < 0) then
    error("troupe.app: body_limit must be a non-negative integer", level + 1)
  end
end

-- app:route(method, path, [options,] [middleware...,] handler): method is "GET", ...
-- or "*"/"ALL" for every method; options: { body_limit = bytes }.
function App:route(method, path, ...)
  if type(method) ~= "string" then error("app:route: the method must be a string", 2) end
  method = upper(method)
  if method == "ALL" then method = "*" end
  path = check_path(path, "a route path", 2)
  router.parse(path, 2)
  local args = table.pack(...)
  local opts, i = nil, 1
  if type(args[1]) == "table" and not is_app(args[1]) then
    opts, i = args[1], 2
    check_opts(opts, 2)
  end
  local fns = {}
  for k = i, args.n do
    if type(args[k]) ~= "function" then
      error("app:route: handlers must be functions, got " .. type(args[k]), 2)
    end
    fns[#fns + 1] = args[k]
  end
  if #fns == 0 then error("app:route: a handler is needed", 2) end
  add_layer(self, { kind = "route", method = method, path = path, fns = fns, opts = opts })
  return self
end

for _, m in ipairs({ "get", "post", "put", "patch", "delete", "head", "options", "all" }) do
  local method = upper(m)
  App[m] = function(self, path, ...)
    return self:route(method, path, ...)
  end
end

-- The error handler fn(err, req, res) of this app (and of the apps mounted in it that
-- have none). err is always an HTTP error (errors.is(err)): another error value comes
-- as a 500 with the original value in err.cause (and err.stack in development).
function App:on_error(fn)
  if type(fn) ~= "function" then error("app:on_error: expected a function", 2) end
  self._on_error = fn
  invalidate(self)
  return self
end

-- Flattens the app and the apps mounted in it into one router and one middleware
-- list, in registration order. Each route keeps the middleware added before it
-- (route.pos: how many of the list come before it) and, in route.chain, the ones that
-- may apply to it: for a static route exactly those whose prefix covers it.
compile = function(root)
  local ci = not root.case_sensitive
  local r = router.new(root.case_sensitive)
  local list, routes = {}, {}
  local function walk(app, base, on_error, depth)
    if depth > 32 then error("troupe.app: apps mounted in a cycle", 0) end
    on_error = app._on_error or on_error
    for _, l in ipairs(app._stack) do
      if l.kind == "mw" then
        local b = base .. l.prefix
        list[#list + 1] = { fn = l.fn, base = b, check = b ~= "" and (ci and lower(b) or b) or nil,
                            ci = ci, on_error = on_error }
      elseif l.kind == "route" then
        local fns = l.fns
        local route = {
          method = l.method, path = router.join(base, l.path), base = base,
          fn = fns[#fns], pos = #list, on_error = on_error,
          -- a mounted app's own body_limit counts for its routes (read here, once)
          body_limit = l.opts and l.opts.body_limit or (app ~= root and app.body_limit or nil),
          opts = l.opts,
        }
        route.locals = {}
        for k = 1, #fns - 1 do route.locals[k] = fns[k] end
        if router.add(r, route.method, route.path, route) then routes[#routes + 1] = route end
      else
        walk(l.app, base .. l.prefix, on_error, depth + 1)
      end
    end
  end
  walk(root, "", false, 0)     -- on_error false: the default handler
  for _, route in ipairs(routes) do
    local chain, static = {}, route.names == nil
    for k = 1, route.pos do
      local layer = list[k]
      if layer.check == nil then
        chain[#chain + 1] = layer
      elseif not static then
        chain[#chain + 1] = layer                   -- checked per request
      elseif under(route.path, layer.check, ci) then
        chain[#chain + 1] = { fn = layer.fn, base = layer.base, on_error = layer.on_error }
      end
    end
    for _, fn in ipairs(route.locals) do
      chain[#chain + 1] = { fn = fn, base = route.base, on_error = route.on_error }
    end
    route.chain, route.nchain = chain, #chain
  end
  local c = { router = r, list = list, nlist = #list }
  root._compiled = c
  return c
end

-- A new app. opts (all optional): env ("development" shows error details; default
-- $TROUPE_ENV, else "production"), case_sensitive (routing; default false),
-- body_limit (bytes, the default of this app's routes; nil: the server's), log (a
-- function(msg, err, req) for unexpected errors, or false).
function M.new(opts)
  opts = opts or {}
  local app = setmetatable({
    env = opts.env or os.getenv("TROUPE_ENV") or "production",
    case_sensitive = opts.case_sensitive or false,
    body_limit = opts.body_limit,
    _stack = {},
    _parents = setmetatable({}, { __mode = "k" }),
  }, App)
  if opts.log ~= nil then app.log = opts.log end
  return app
end

M.router = M.new    -- express.Router(): the same thing here

return M
