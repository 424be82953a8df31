-- bench/lua/cpu.lua: plain Lua work of the kind business rules do (calls, loops over
-- records, field reads, arithmetic, a little string building), the same in an actor
-- (cpu_actor.lua) and in a bare Lua state with no hook (bench/lua_bare.c):
-- actors.lua.cpu and actors.lua.cpu_bare. Returns the work as a function; its result
-- shows that both ran the same thing.
return function()
  local function fib(n) if n < 2 then return n end return fib(n - 1) + fib(n - 2) end
  local total = fib(29)
  local rows = {}
  for i = 1, 1000 do rows[i] = { id = i, score = i % 97, price = i * 1.5 } end
  for _ = 1, 1000 do
    for i = 1, #rows do
      local r = rows[i]
      if r.score > 48 then total = total + r.price // 1 else total = total - 1 end
    end
  end
  local parts = {}
  for i = 1, 2000 do parts[i] = ("%d:%d"):format(i, rows[i % 1000 + 1].score) end
  return total + #table.concat(parts, ",")
end
