-- troupe.router: the route table behind troupe.app.
--
-- Patterns: static segments, ":name" segments (one non-empty segment) and a trailing
-- "*" or "*name" (the rest of the path, possibly empty). Static patterns live in one
-- hash (normalized path -> { METHOD = route }), so a static route costs one lookup;
-- the others in a segment trie, tried static child first, then the parameter, then
-- the wildcard, backtracking on failure. Matching runs on the raw (percent-encoded)
-- path like express; parameter values are returned raw, decode() decodes them.
-- Routing is case-insensitive for static segments and ignores one trailing slash,
-- like express's defaults; `case_sensitive` turns the first off.
local router = {}

local byte, find, sub, lower, gsub, char = string.byte, string.find, string.sub,
  string.lower, string.gsub, string.char
local tonumber, sort, concat = tonumber, table.sort, table.concat

local SLASH = 47

-- "/users/" -> "/users", "" -> "/", keeping "/" itself.
local function trim(path)
  local n = #path
  if n > 1 and byte(path, n) == SLASH then return sub(path, 1, n - 1) end
  if n == 0 then return "/" end
  return path
end
router.trim = trim

-- Joins a mount prefix ("" or "/api") and a pattern ("/users"); the result is
-- trimmed ("/api" .. "/" -> "/api").
function router.join(base, path)
  if path == "/" or path == "" then return base == "" and "/" or base end
  return trim(base .. path)
end

-- Checks a user-given path or prefix; returns it trimmed.
function router.check(path, what, level)
  if type(path) ~= "string" or byte(path, 1) ~= SLASH then
    error(("troupe.app: %s must be a string starting with '/', got %s"):format(what,
          type(path) == "string" and ("%q"):format(path) or type(path)), level + 1)
  end
  return trim(path)
end

local function hex(h) return char(tonumber(h, 16)) end

-- Percent-decodes s like decodeURIComponent ('+' stays '+'); nil when s has a
-- malformed escape or decodes to invalid UTF-8.
function router.decode(s)
  if not find(s, "%", 1, true) then return s end
  if find(s, "%%[^%x]") or find(s, "%%%x[^%x]") or find(s, "%%%x?$") then return nil end
  s = gsub(s, "%%(%x%x)", hex)
  if not utf8.len(s) then return nil end
  return s
end

function router.new(case_sensitive)
  return { static = {}, trie = {}, case_sensitive = case_sensitive and true or false }
end

local function key(r, s)
  if r.case_sensitive then return s end
  return lower(s)
end

-- Splits a pattern into segments; returns nil for a static pattern, else the list
-- of { kind = "static"|"param"|"wild", name = } and the parameter names in order.
local function parse(pattern, level)
  if not find(pattern, "[:*]") then return nil end
  local segs, names = {}, {}
  local pos, n = 2, #pattern
  while pos <= n do
    local slash = find(pattern, "/", pos, true)
    local stop = slash and slash - 1 or n
    local seg = sub(pattern, pos, stop)
    local c = byte(seg, 1)
    if c == 58 then                                   -- ':'
      local name = sub(seg, 2)
      if not find(name, "^[%a_][%w_]*$") then
        error(("troupe.app: bad parameter name in %q"):format(pattern), level + 1)
      end
      segs[#segs + 1] = { kind = "param" }
      names[#names + 1] = name
    elseif c == 42 then                               -- '*'
      if stop ~= n then
        error(("troupe.app: '*' must be the last segment of %q"):format(pattern), level + 1)
      end
      local name = sub(seg, 2)
      if name ~= "" and not find(name, "^[%a_][%w_]*$") then
        error(("troupe.app: bad wildcard name in %q"):format(pattern), level + 1)
      end
      segs[#segs + 1] = { kind = "wild" }
      names[#names + 1] = name == "" and "*" or name
    else
      if find(seg, "[:*]") then
        error(("troupe.app: ':' and '*' must start a segment in %q"):format(pattern), level + 1)
      end
      segs[#segs + 1] = { kind = "static", name = seg }
    end
    pos = stop + 2
  end
  return segs, names
end
router.parse = parse

-- Adds route (any table) for method ("GET", ..., "*" for every method) and pattern
-- (trimmed, absolute). The first route added for a method and pattern wins; returns
-- true when route was added. Sets route.names (parameter names, or nil).
function router.add(r, method, pattern, route, level)
  level = (level or 1) + 1
  local segs, names = parse(pattern, level)
  local methods
  if not segs then
    local k = key(r, pattern)
    methods = r.static[k]
    if not methods then methods = {}; r.static[k] = methods end
  else
    local node = r.trie
    for i = 1, #segs do
      local s = segs[i]
      if s.kind == "static" then
        node.children = node.children or {}
        local k = key(r, s.name)
        local child = node.children[k]
        if not child then child = {}; node.children[k] = child end
        node = child
      elseif s.kind == "param" then
        node.param = node.param or {}
        node = node.param
      else
        node.wild = node.wild or {}
        methods = node.wild
      end
    end
    if not methods then
      node.methods = node.methods or {}
      methods = node.methods
    end
  end
  if methods[method] then return false end
  methods[method] = route
  route.names = names
  return true
end

-- The route of methods for method: its own, GET's for HEAD, then the catch-all.
local function pick(methods, method)
  local route = methods[method]
  if route then return route end
  if method == "HEAD" then
    route = methods.GET
    if route then return route end
  end
  return methods["*"]
end
router.pick = pick

-- Walks the trie from node for path[pos..n]; vals collects raw parameter values.
local function walk(r, node, path, pos, n, method, vals, depth)
  if pos > n then
    local ms = node.methods
    if ms then
      local route = pick(ms, method)
      if route then return route end
    end
    ms = node.wild
    if ms then
      local route = pick(ms, method)
      if route then vals[depth + 1] = ""; return route end
    end
    return nil
  end
  local slash = find(path, "/", pos, true)
  local stop = (slash and slash <= n) and slash - 1 or n
  local children = node.children
  if children then
    local seg = sub(path, pos, stop)
    local child = children[seg]
    if not child and not r.case_sensitive then child = children[lower(seg)] end
    if child then
      local route = walk(r, child, path, stop + 2, n, method, vals, depth)
      if route then return route end
    end
  end
  local p = node.param
  if p and stop >= pos then
    local route = walk(r, p, path, stop + 2, n, method, vals, depth + 1)
    if route then
      vals[depth + 1] = sub(path, pos, stop)
      return route
    end
  end
  local ms = node.wild
  if ms then
    local route = pick(ms, method)
    if route then vals[depth + 1] = sub(path, pos); return route end
  end
  return nil
end

-- The route for method and the raw path (without query string), and the raw values
-- of its parameters (an array in pattern order; nil for a static route); nil when
-- none matches.
function router.find(r, method, path)
  local static = r.static
  local ms = static[path]
  if ms then
    local route = ms[method] or pick(ms, method)
    if route then return route end
  end
  local n = #path
  if n > 1 and byte(path, n) == SLASH then n = n - 1 end
  if not ms then
    local k = n < #path and sub(path, 1, n) or path
    if not r.case_sensitive then k = lower(k) end
    if k ~= path then
      ms = static[k]
      if ms then
        local route = pick(ms, method)
        if route then return route end
      end
    end
  end
  if byte(path, 1) ~= SLASH then return nil end
  local vals = {}
  local route = walk(r, r.trie, path, 2, n, method, vals, 0)
  if route then return route, vals end
  return nil
end

-- Every node of the trie matching path[pos..n] (for the Allow header).
local function collect(r, node, path, pos, n, out)
  if pos > n then
    if node.methods then out[#out + 1] = node.methods end
    if node.wild then out[#out + 1] = node.wild end
    return
  end
  local slash = find(path, "/", pos, true)
  local stop = (slash and slash <= n) and slash - 1 or n
  local children = node.children
  if children then
    local seg = sub(path, pos, stop)
    local child = children[seg]
    if not child and not r.case_sensitive then child = children[lower(seg)] end
    if child then collect(r, child, path, stop + 2, n, out) end
  end
  if node.param and stop >= pos then collect(r, node.param, path, stop + 2, n, out) end
  if node.wild then out[#out + 1] = node.wild end
end

-- The methods that some route accepts for path, as an Allow header value
-- ("GET, HEAD, POST": sorted, HEAD added for GET), or nil when no route matches the
-- path with any method.
function router.allowed(r, path)
  local n = #path
  if n > 1 and byte(path, n) == SLASH then n = n - 1 end
  local found = {}
  local k = sub(path, 1, n)
  if not r.case_sensitive then k = lower(k) end
  if r.static[k] then found[1] = r.static[k] end
  if byte(path, 1) == SLASH then collect(r, r.trie, path, 2, n, found) end
  if #found == 0 then return nil end
  local set, list = {}, {}
  for _, ms in ipairs(found) do
    for m in pairs(ms) do
      if not set[m] then set[m] = true; list[#list + 1] = m end
      if m == "GET" and not set.HEAD then set.HEAD = true; list[#list + 1] = "HEAD" end
    end
  end
  sort(list)
  return concat(list, ", ")
end

return router
