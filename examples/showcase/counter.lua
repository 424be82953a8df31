-- An actor that counts visits, shared by every worker of the showcase app.
--   "hit"  -> the new count        "get" -> the count
return {
  init = function(args) return { n = args and args.start or 0 } end,
  handle = function(state, msg)
    if msg == "hit" then
      state.n = state.n + 1
      return state.n
    elseif msg == "get" then
      return state.n
    end
  end,
}
