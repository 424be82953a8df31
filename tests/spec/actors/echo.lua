-- Answers every call with the message it got.
return {
  handle = function(_, msg) return msg end,
}
