-- init that runs forever ("loop") or allocates without bound ("alloc").
return {
  init = function(args)
    if args == "loop" then while true do end end
    local t = {}
    for i = 1, 1e8 do t[i] = ("%064d"):format(i) end
    return {}
  end,
  handle = function() end,
}
