return {
  init = function() error("init exploded") end,
  handle = function() end,
}
