-- A general-purpose actor driven by its messages (see ops below).
-- args (all optional):
--   notify = pid     gets {started = self, id = id} from init and
--                    {terminated = self, id = id, reason = reason} from terminate
--   id = any         echoed in those notices
--   register = name  registers itself under name in init
--   fail = text      init raises text
--   fail_if = name   init raises while name is registered
--   trap = bool      traps exits; notices go to state.inbox (and to notify)
--   value = any      kept as state.value
local actor = require "troupe.actor"

local ops = {}

function ops.ping() return "pong" end
function ops.echo(_, m) return m.v end
function ops.self() return actor.self() end
function ops.from(_, _, from) return from end
function ops.state(s) return { value = s.value, count = s.count, inbox = s.inbox } end
function ops.set(s, m) s.value = m.v; return true end
function ops.error(_, m) error(m.v, m.level) end
function ops.error_table() error({ code = 42 }) end
function ops.sleep(_, m) actor.sleep(m.v); return "slept" end
function ops.spin(_, m)            -- busy: holds the worker for m.v seconds of CPU
  local t = actor.now()
  while actor.now() - t < m.v do end
  return "spun"
end
function ops.exit(_, m) actor.exit(m.v); return m.reply end
function ops.exit_and_wait(_, m) actor.exit(m.v); actor.sleep(10); return "late" end
function ops.call(_, m) return table.pack(actor.call(m.to, m.msg, m.timeout)) end
function ops.send(_, m) return table.pack(actor.send(m.to, m.msg)) end
function ops.loop() while true do end end
function ops.pcall_loop()
  while true do pcall(function() while true do end end) end
end
function ops.coroutine_loop()
  while true do
    coroutine.resume(coroutine.create(function() while true do end end))
  end
end
function ops.alloc(s, m)           -- a table of m.v strings of 64 bytes
  local t = {}
  for i = 1, m.v do t[i] = ("%064d"):format(i) end
  if m.keep then s.kept = t end
  return #t
end
function ops.free(s) s.kept = nil; collectgarbage(); return true end
function ops.mem() collectgarbage(); return collectgarbage("count") * 1024 end
function ops.reply_function() return function() end end
function ops.multi() return "first", "second" end
function ops.nothing() end
function ops.count(s) return s.count end
function ops.has_io() return io ~= nil or nil end

return {
  init = function(args)
    args = args or {}
    if args.fail then error(args.fail, 0) end
    if args.fail_if and actor.whereis(args.fail_if) then error("refusing to start", 0) end
    if args.trap then actor.trap_exit(true) end
    if args.register then assert(actor.register(args.register)) end
    local s = { value = args.value, count = 0, inbox = {}, notify = args.notify, id = args.id }
    if args.notify then actor.send(args.notify, { started = actor.self(), id = args.id }) end
    return s
  end,
  handle = function(s, m, from)
    s.count = s.count + 1
    if m == "ping" then return "pong" end
    if type(m) == "table" and m.op and ops[m.op] then return ops[m.op](s, m, from) end
    s.inbox[#s.inbox + 1] = m
    -- the runtime stopping (an exit signal from no actor): a trapping actor leaves
    if type(m) == "table" and m.type == "exit" and m.from == nil then actor.exit(m.reason) end
    if s.notify then actor.send(s.notify, m) end
  end,
  terminate = function(s, reason)
    if s.notify then
      actor.send(s.notify, { terminated = actor.self(), id = s.id, reason = reason })
    end
  end,
}
