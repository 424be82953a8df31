-- troupe.errors: HTTP errors for handlers.
--
--   local errors = require "troupe.errors"
--   error(errors.new(404, "User not found"))            -- raise it, or
--   return errors.new(422, "Invalid user", { name = "required" }, "VALIDATION")
--
-- An error is a table { status, message, details?, code?, headers? } with a shared
-- metatable: the app renders it as {"success":false,"error":message[,"code"][,"details"]}
-- with that status (and those response headers). Any other value raised in a handler
-- becomes a 500 "Internal Server Error"; app.lua wraps it with errors.internal(cause).
local errors = {}

local HttpError = {}
HttpError.__index = HttpError
HttpError.__name = "troupe.HttpError"

-- Reason phrases of the statuses an API meets (RFC 9110 and friends).
local reasons = {
  [100] = "Continue", [101] = "Switching Protocols",
  [200] = "OK", [201] = "Created", [202] = "Accepted", [204] = "No Content",
  [206] = "Partial Content",
  [301] = "Moved Permanently", [302] = "Found", [303] = "See Other",
  [304] = "Not Modified", [307] = "Temporary Redirect", [308] = "Permanent Redirect",
  [400] = "Bad Request", [401] = "Unauthorized", [402] = "Payment Required",
  [403] = "Forbidden", [404] = "Not Found", [405] = "Method Not Allowed",
  [406] = "Not Acceptable", [408] = "Request Timeout", [409] = "Conflict",
  [410] = "Gone", [411] = "Length Required", [412] = "Precondition Failed",
  [413] = "Payload Too Large", [414] = "URI Too Long", [415] = "Unsupported Media Type",
  [416] = "Range Not Satisfiable", [417] = "Expectation Failed", [418] = "I'm a Teapot",
  [422] = "Unprocessable Entity", [423] = "Locked", [424] = "Failed Dependency",
  [425] = "Too Early", [426] = "Upgrade Required", [428] = "Precondition Required",
  [429] = "Too Many Requests", [431] = "Request Header Fields Too Large",
  [451] = "Unavailable For Legal Reasons",
  [500] = "Internal Server Error", [501] = "Not Implemented", [502] = "Bad Gateway",
  [503] = "Service Unavailable", [504] = "Gateway Timeout",
  [505] = "HTTP Version Not Supported",
}

-- The reason phrase of status ("Not Found"), or a generic one for its class.
function errors.reason(status)
  local r = reasons[status]
  if r then return r end
  if type(status) ~= "number" then return "Unknown" end
  if status >= 500 then return "Server Error" end
  if status >= 400 then return "Client Error" end
  return "Unknown"
end

local function check_status(status, level)
  if math.type(status) ~= "integer" or status < 100 or status > 599 then
    error("troupe.errors: status must be an integer from 100 to 599, got " .. tostring(status),
          level + 1)
  end
end

-- A new HTTP error. message defaults to the reason phrase of status; details (any
-- value that JSON can carry) and code (a machine-readable string, e.g. "VALIDATION")
-- are optional and appear in the JSON body when set.
function errors.new(status, message, details, code)
  check_status(status, 2)
  if message ~= nil and type(message) ~= "string" then message = tostring(message) end
  return setmetatable({
    status = status,
    message = message or errors.reason(status),
    details = details,
    code = code,
  }, HttpError)
end

-- Raises errors.new(...): a shorthand for error(errors.new(...)).
function errors.raise(status, message, details, code)
  check_status(status, 2)
  error(errors.new(status, message, details, code), 0)
end

-- Whether e is an HTTP error (and, with status, one with that status).
function errors.is(e, status)
  if type(e) ~= "table" or getmetatable(e) ~= HttpError then return false end
  return status == nil or e.status == status
end

-- The 500 that stands for any other error: message "Internal Server Error", the
-- original value in cause (and its traceback in stack when one was taken). internal
-- = true tells the default error handler to hide cause and stack outside development.
function errors.internal(cause, stack)
  local e = errors.new(500)
  e.internal = true
  e.cause = cause
  e.stack = stack
  return e
end

-- Shorthands for the common statuses: errors.not_found("User not found"), ...
local shorthands = {
  bad_request = 400, unauthorized = 401, forbidden = 403, not_found = 404,
  method_not_allowed = 405, conflict = 409, gone = 410, payload_too_large = 413,
  unprocessable = 422, too_many_requests = 429, internal_error = 500,
  not_implemented = 501, bad_gateway = 502, service_unavailable = 503,
  gateway_timeout = 504,
}
for name, status in pairs(shorthands) do
  errors[name] = function(message, details, code)
    return errors.new(status, message, details, code)
  end
end

function HttpError:__tostring()
  return ("HTTP %d: %s"):format(self.status, self.message)
end

-- The metatable, for code that builds errors by hand (app.lua) and for specs.
errors.HttpError = HttpError

return errors
