-- An actor for redis_restart.lua. {op = "load", key =, until_t =} runs INCRs in a loop
-- (one loop per message: each message is a coroutine of its own) until until_t, and
-- keeps counts; {op = "stats"} returns them. Every pub/sub message it gets is kept;
-- {op = "got"} returns them as { {t =, message =}, ... }.
local actor = require "troupe.actor"
local redis = require "troupe.redis"

return {
  init = function()
    return { ok = 0, fail = 0, ok_before = 0, ok_after = 0, got = {}, errors = {},
             max_fail = {} }
  end,
  handle = function(s, msg)
    if msg.type == "redis" then
      s.got[#s.got + 1] = { t = actor.now(), message = msg.message }
    elseif msg.op == "load" then
      while actor.now() < msg.until_t do
        local t0 = actor.now()
        local v, err = redis.call("INCR", msg.key)
        local t1 = actor.now()
        if v then
          s.ok = s.ok + 1
          if s.fail == 0 then s.ok_before = s.ok_before + 1 end
          s.ok_after = s.ok_after + 1
        else
          s.fail = s.fail + 1
          s.ok_after = 0
          s.first_fail = s.first_fail or t1
          s.last_fail = t1
          -- "not connected": sent while down; "connection lost": in flight when it went
          local kind = err:match("^redis: ([%a ]-) %(") or err
          s.errors[kind] = (s.errors[kind] or 0) + 1
          if t1 - t0 > (s.max_fail[kind] or 0) then s.max_fail[kind] = t1 - t0 end
          actor.sleep(0.002)   -- failing fast: do not spin
        end
      end
    elseif msg.op == "stats" then
      return { ok = s.ok, fail = s.fail, ok_before = s.ok_before, ok_after = s.ok_after,
               max_fail = s.max_fail, first_fail = s.first_fail,
               last_fail = s.last_fail, errors = s.errors }
    elseif msg.op == "got" then
      return s.got
    end
  end,
}
