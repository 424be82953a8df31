-- bench/lua/actors.lua: Lua actor benchmarks, `BENCH <name> <value> <unit>` lines,
-- each the median of 5 runs after one warm-up run.
--
--   build/troupe run --workers 2 --unsafe bench/lua/actors.lua [roundtrip|oneway|spawn|oneway-variants]
--
-- --unsafe: the spawn figures read /proc/self/statm and run each measurement in a
-- fresh troupe process (io.open and io.popen are blocked in a sandboxed VM). The
-- actors it spawns are sandboxed as usual.
--
--   actors.lua.roundtrip        client actor: actor.call(server, i) in a loop, each
--                               waiting for its reply; server.lua's handle returns
--                               the message. Round trips/s, timed inside the client.
--   actors.lua.oneway           sender actor: actor.send(counter, i) for i = 1..N in
--                               batches of 10,000, sending itself a message between
--                               batches to give the worker back (see sender.lua);
--                               time from the start until the counter has the N-th.
--   actors.lua.spawn_10k        seconds for the main actor to actor.spawn 10,000
--                               idle actors (idle.lua), each a VM of its own.
--   actors.lua.bytes_per_actor  resident memory (statm RSS) growth over those 10,000
--                               spawns / 10,000.
--   actors.lua.vm_bytes_per_actor  what one idle actor's VM counts itself
--                               (collectgarbage("count") at the end of its init).
--   actors.lua.cpu             seconds an actor takes for the plain Lua work of
--                               cpu.lua (records, field reads, string building,
--                               calls); bench/lua_bare.c times the same work in a bare
--                               Lua state with no hook (actors.lua.cpu_bare).
-- Both spawn figures come from a fresh process per run (as actors.c.spawn_1m does),
-- so memory freed by an earlier run cannot hide the growth.
local actor = require "troupe.actor"
local now = actor.now
local fmt = string.format

local RUNS = 5
local WORKERS = tonumber(os.getenv("TROUPE_BENCH_WORKERS")) or 2
local N_ROUNDTRIP = 500000
local N_ONEWAY = 2000000
local ONEWAY_BATCH = 10000
local N_SPAWN = 10000

local dir = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "."
local function script(name) return dir .. "/" .. name end

local function median(v)
  table.sort(v)
  return v[(#v + 1) // 2]
end

local function bench(name, unit, fmtv, runs)
  local v = {}
  runs()                                  -- warm-up, not counted
  for i = 1, RUNS do v[i] = runs() end
  print(fmt("BENCH %s " .. fmtv .. " %s", name, median(v), unit))
  io.stdout:flush()
end

local function spawn(name, opts)
  return assert(actor.spawn(script(name), nil, opts))
end

-- ---- roundtrip ----

local function roundtrip()
  local server, client = spawn("server.lua"), spawn("client.lua")
  bench("actors.lua.roundtrip", "calls/s", "%.0f", function()
    local secs = assert(actor.call(client, { server = server, n = N_ROUNDTRIP }, math.huge))
    return N_ROUNDTRIP / secs
  end)
  actor.kill(client, "shutdown")
  actor.kill(server, "shutdown")
end

-- ---- oneway ----

local function oneway(yield, batch, name)
  batch = batch or ONEWAY_BATCH
  -- one batch of everything takes longer than the default 1 s budget of a message
  local counter, sender = spawn("counter.lua"), spawn("sender.lua", { budget = 60 })
  bench(name or "actors.lua.oneway", "msgs/s", "%.0f", function()
    assert(actor.call(counter, { expect = N_ONEWAY }))
    local t0 = now()
    assert(actor.call(sender, { to = counter, n = N_ONEWAY, batch = batch, yield = yield }, math.huge))
    local done_at = assert(actor.call(counter, "wait", math.huge))
    return N_ONEWAY / (done_at - t0)
  end)
  actor.kill(sender, "shutdown")
  actor.kill(counter, "shutdown")
end

-- ---- cpu ----

local function cpu()
  local pid = assert(actor.spawn(script("cpu_actor.lua"), dir))
  local result
  bench("actors.lua.cpu", "s", "%.4f", function()
    local r = assert(actor.call(pid, "run", math.huge))
    result = r[2]
    return r[1]
  end)
  print(fmt("# cpu.lua result %d", result))
  actor.kill(pid, "shutdown")
end

-- ---- spawn (one run per process) ----

local function rss_bytes(page)
  local f = assert(io.open("/proc/self/statm"))
  local _, resident = f:read("n", "n")
  f:close()
  return resident * page
end

local function spawn_child(page)
  local idle = script("idle.lua")
  collectgarbage()
  local before = rss_bytes(page)
  local t0 = now()
  local first, last = assert(actor.spawn(idle))
  for _ = 2, N_SPAWN do
    last = actor.spawn(idle)
    if not last then error("spawn failed") end
  end
  local secs = now() - t0
  collectgarbage()
  local after = rss_bytes(page)
  local vm = assert(actor.call(last, "bytes"))
  print(fmt("SPAWN %.6f %.1f %.0f %.0f", secs, (after - before) / N_SPAWN, vm.init, vm.now))
end

local function sh(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  p:close()
  return out
end

local function spawn_bench()
  local pid = assert(io.open("/proc/self/stat")):read("n")
  local exe = sh("readlink /proc/" .. pid .. "/exe"):gsub("%s+$", "")
  local src = debug.getinfo(1, "S").source:sub(2)
  local cmd = fmt("%q --workers %d --unsafe run %q spawn-child", exe, WORKERS, src)
  local function once()
    local out = sh(cmd)
    local secs, bytes, vm = out:match("SPAWN (%S+) (%S+) (%S+)")
    if not secs then error("spawn child failed: " .. out) end
    return tonumber(secs), tonumber(bytes), tonumber(vm)
  end
  once()                                  -- warm-up, not counted
  local s, b, m = {}, {}, {}
  for i = 1, RUNS do s[i], b[i], m[i] = once() end
  print(fmt("BENCH actors.lua.spawn_10k %.3f s", median(s)))
  print(fmt("BENCH actors.lua.bytes_per_actor %.0f bytes", median(b)))
  print(fmt("BENCH actors.lua.vm_bytes_per_actor %.0f bytes", median(m)))
  io.stdout:flush()
end

-- ---- main ----

local what = ...
if what == "spawn-child" then
  spawn_child(tonumber(sh("getconf PAGESIZE")) or 4096)
  return
end
if what == nil or what == "roundtrip" then roundtrip() end
if what == nil or what == "oneway" then oneway() end
if what == "oneway-variants" then
  -- the yield choices sender.lua offers, for comparison
  for _, b in ipairs { 1000, 10000, 100000 } do
    oneway("self", b, "actors.lua.oneway.self_" .. b)
    oneway("sleep", b, "actors.lua.oneway.sleep_" .. b)
  end
  oneway("self", N_ONEWAY, "actors.lua.oneway.no_yield")
end
if what == nil or what == "cpu" then cpu() end
if what == nil or what == "spawn" then spawn_bench() end
