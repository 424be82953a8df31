-- bench/http.sh: HTTP/1.1 pipelining, DEPTH requests for the URL's path in one write.
--   wrk -s bench/wrk/pipeline.lua URL -- DEPTH      (DEPTH defaults to 16)
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")

local batch

function init(args)
  local depth = tonumber(args[1]) or 16
  local r = {}
  for i = 1, depth do r[i] = wrk.format(nil, wrk.path) end
  batch = table.concat(r)
end

function request()
  return batch
end
