-- troupe.test: calls an app's routes without a socket, for specs.
--
--   local client = require("troupe.test").client(app)
--   local r = client:get("/users/1", { headers = { authorization = "Bearer x" } })
--   assert.equal(200, r.status); assert.equal("1", r.json().id)
--   client:post("/users", { json = { name = "ann" } })
--   client:request("PATCH", "/users/1", { query = { dry = "1" }, body = "..." })
--
-- A request runs in the caller's coroutine, the way the server runs it in one of its
-- own: a handler that yields (actor.call, actor.sleep) works inside `troupe test`.
-- The response: { status, headers (lowercase names), body (streamed chunks joined),
-- json = function() -> the decoded body, chunks (for a stream), error (what escaped
-- the app, if anything) }.
local test = {}

local lower, upper, format, gsub, find, sub, byte =
  string.lower, string.upper, string.format, string.gsub, string.find, string.sub,
  string.byte

local DEFAULT_BODY_LIMIT = 1024 * 1024   -- the C server's default

local json
local function json_module()
  json = json or require "troupe.json"
  return json
end

-- ---- the transport: the functions of troupe.http, over a Lua table per request ----
-- h is { req_headers = {lowercase -> value}, ... }; the response fields land in it.

local transport = {}
test.transport = transport

local function check_headers(headers)
  if headers == nil then return nil end
  if type(headers) ~= "table" then error("transport: headers must be a table or nil", 3) end
  local out = {}
  for k, v in pairs(headers) do
    if type(k) ~= "string" then error("transport: a header name must be a string", 3) end
    if type(v) == "table" then
      for _, s in ipairs(v) do
        if type(s) ~= "string" then error("transport: header values must be strings", 3) end
      end
    elseif type(v) ~= "string" then
      error(("transport: header %s: the value must be a string, got %s"):format(k, type(v)), 3)
    end
    out[lower(k)] = v
  end
  return out
end

local function check_status(status)
  if math.type(status) ~= "integer" or status < 100 or status > 599 then
    error("transport: bad status " .. tostring(status), 3)
  end
end

function transport.header(h, name)
  return h.req_headers[lower(name)]
end

function transport.headers(h)
  local t = {}
  for k, v in pairs(h.req_headers) do t[k] = v end
  return t
end

function transport.respond(h, status, body, content_type, headers)
  if h.started then error("transport: a response was already started", 2) end
  check_status(status)
  if type(body) ~= "string" then error("transport: the body must be a string", 2) end
  if content_type ~= nil and type(content_type) ~= "string" then
    error("transport: the content type must be a string or nil", 2)
  end
  h.started = true
  h.status, h.body, h.content_type, h.headers = status, body, content_type,
    check_headers(headers)
  return true
end

function transport.respond_json(h, status, value, headers)
  local body = json_module().encode(value)
  return transport.respond(h, status, body, "application/json", headers)
end

function transport.write(h, chunk, status, content_type, headers)
  if type(chunk) ~= "string" then error("transport: a chunk must be a string", 2) end
  if h.finished then error("transport: the stream is finished", 2) end
  if not h.started then
    check_status(status)
    h.started, h.streamed = true, true
    h.status, h.content_type, h.headers = status, content_type, check_headers(headers)
    h.chunks = {}
  elseif not h.streamed then
    error("transport: a response was already sent", 2)
  end
  if chunk ~= "" then h.chunks[#h.chunks + 1] = chunk end
  return true
end

function transport.finish(h)
  if not h.streamed then error("transport: finish without a stream", 2) end
  h.finished = true
  return true
end

function transport.sent(h)
  return h.started == true
end

-- ---- requests ---------------------------------------------------------------

local function escape(s)
  return (gsub(tostring(s), "[^%w%-%._~]", function(c) return format("%%%02X", byte(c)) end))
end
test.escape = escape

-- { b = "x y", a = { 1, 2 } } -> "a=1&a=2&b=x%20y" (keys sorted, for stable specs)
local function encode_query(q)
  local keys = {}
  for k in pairs(q) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do
    local v = q[k]
    if v == nil then v = q[tonumber(k)] end
    if type(v) == "table" then
      for _, x in ipairs(v) do parts[#parts + 1] = escape(k) .. "=" .. escape(x) end
    elseif v == true then
      parts[#parts + 1] = escape(k)
    elseif v ~= false then
      parts[#parts + 1] = escape(k) .. "=" .. escape(v)
    end
  end
  return table.concat(parts, "&")
end
test.encode_query = encode_query

local Client = {}
Client.__index = Client

local ids = 0

local function response(h, err)
  local r = { status = h.status, headers = h.headers or {}, body = h.body, error = err }
  if h.content_type then r.headers["content-type"] = h.content_type end
  if h.streamed then
    r.chunks = h.chunks
    r.body = table.concat(h.chunks)
    r.headers["transfer-encoding"] = "chunked"
    r.finished = h.finished == true
  else
    r.headers["content-length"] = tostring(#(r.body or ""))
  end
  r.headers["x-request-id"] = h.id
  if h.method == "HEAD" then r.body = "" end
  local body = r.body
  r.json = function()
    local v, jerr = json_module().decode(body)
    if v == nil then error("response body is not JSON: " .. tostring(jerr) .. ": " .. body, 2) end
    return v
  end
  return r
end

-- Sends method path (which may carry a query string) to the app. opts: headers (any
-- case), query (a table, added to the path's query string), body (a string), json (a
-- value sent encoded, with Content-Type application/json unless one is given), ip.
function Client:request(method, path, opts)
  opts = opts or {}
  method = upper(method)
  local app = self.app
  local headers = {}
  for k, v in pairs(self.defaults.headers or {}) do headers[lower(k)] = v end
  for k, v in pairs(opts.headers or {}) do headers[lower(k)] = v end
  local body = opts.body
  if opts.json ~= nil then
    if body ~= nil then error("test client: give body or json, not both", 2) end
    body = json_module().encode(opts.json)
    headers["content-type"] = headers["content-type"] or "application/json"
  end
  if body ~= nil and type(body) ~= "string" then error("test client: body must be a string", 2) end
  if body ~= nil then headers["content-length"] = tostring(#body) end
  local qs
  local q = find(path, "?", 1, true)
  if q then path, qs = sub(path, 1, q - 1), sub(path, q + 1) end
  if opts.query then
    local extra = encode_query(opts.query)
    if extra ~= "" then qs = qs and qs ~= "" and (qs .. "&" .. extra) or extra end
  end
  ids = ids + 1
  local id = format("test-%d", ids)
  local h = { req_headers = headers, id = id, method = method }
  if body ~= nil then
    local limit = app:_body_limit(method, path) or DEFAULT_BODY_LIMIT
    if #body > limit then
      h.status, h.content_type = 413, "application/json"
      h.body = '{"success":false,"error":"Payload Too Large"}'
      return response(h)
    end
  end
  local ok, err = pcall(app._handle, app, transport, h, method, path, qs, body,
                        opts.ip or "127.0.0.1", id)
  if not ok or not h.started then
    -- what the C server does when an error escapes or nothing was sent
    if not h.started then
      h.status, h.content_type = 500, "text/plain"
      h.body = "Internal Server Error"
    end
    return response(h, ok and "no response" or err)
  end
  return response(h)
end

for _, m in ipairs({ "get", "post", "put", "patch", "delete", "head", "options" }) do
  local method = upper(m)
  Client[m] = function(self, path, opts) return self:request(method, path, opts) end
end

-- A client for app. defaults: { headers = {...} } sent with every request.
function test.client(app, defaults)
  if type(app) ~= "table" or type(app._handle) ~= "function" then
    error("troupe.test.client: expected an app (require('troupe.app').new())", 2)
  end
  return setmetatable({ app = app, defaults = defaults or {} }, Client)
end

return test
