-- A remote-controlled actor: {op="eval", code=, args=} runs code (a text chunk) with
-- `actor`, `state` and the args as `...`, and answers with its results. Every other
-- message (exit and down notices included) is appended to state.inbox and, when
-- args.notify is a pid, forwarded there.
-- args: { trap = bool, notify = pid, link = pid, monitor = pid }
local actor = require "troupe.actor"
return {
  init = function(args)
    args = args or {}
    local state = { inbox = {}, notify = args.notify }
    if args.trap then actor.trap_exit(true) end
    if args.link then state.link_result = { actor.link(args.link) } end
    if args.monitor then state.monitor_ref = actor.monitor(args.monitor) end
    return state
  end,
  handle = function(state, msg, from)
    if type(msg) == "table" and msg.op == "eval" then
      local env = setmetatable({ actor = actor, state = state }, { __index = _G })
      local f = assert(load(msg.code, "=probe", "t", env))
      local args = msg.args or { n = 0 }
      return f(table.unpack(args, 1, args.n or #args))
    end
    state.inbox[#state.inbox + 1] = msg
    -- the runtime stopping (an exit signal from no actor): a trapping actor leaves
    if type(msg) == "table" and msg.type == "exit" and msg.from == nil then actor.exit(msg.reason) end
    if state.notify then actor.send(state.notify, msg) end
  end,
  terminate = function(state, reason)
    if state.notify then actor.send(state.notify, { terminated = actor.self(), reason = reason }) end
  end,
}
