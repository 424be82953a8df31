-- A business rule in Lua that examples/embed/embed.c calls from C (tr_lua_call_json).
return {
  handle = function(state, order)
    local total = 0
    for _, item in ipairs(order.items) do total = total + item.qty * item.price end
    if total >= 100 then total = total * 0.9 end          -- 10% off large orders
    return { total = total }
  end,
}
