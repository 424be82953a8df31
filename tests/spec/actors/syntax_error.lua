return {
  handle = function(s, m) return m end
  this is not lua
}
