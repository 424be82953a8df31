-- bench/http.sh: prints one parseable line after a wrk run (wrk -s report.lua):
--   WRK requests=N duration_us=N rps=F p99_us=N non2xx=N errors=N
-- Latencies are in microseconds. Loaded by pipeline.lua too.

-- wrk 4.1's coordinated-omission correction may add samples below the recorded minimum
-- (it does with pipelining, where its expected interval is per request, not per batch);
-- percentile() then sums from the minimum, never reaches its rank and answers 0. So find
-- the share of samples percentile() can see, and take the 99th percentile of that share.
local function p99(latency)
  local visible = 100
  if latency:percentile(100) == 0 then
    local lo, hi = 0, 100
    for _ = 1, 40 do
      local mid = (lo + hi) / 2
      if latency:percentile(mid) > 0 then lo = mid else hi = mid end
    end
    visible = lo
  end
  return latency:percentile(visible * 0.99)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK requests=%d duration_us=%d rps=%.1f p99_us=%d non2xx=%d errors=%d\n",
    summary.requests, summary.duration,
    summary.requests / (summary.duration / 1e6),
    p99(latency), e.status,
    e.connect + e.read + e.write + e.timeout))
end
