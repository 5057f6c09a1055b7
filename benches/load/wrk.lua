-- wrk script for benches/load.sh: POSTs the JSON body in the file named by $BODY_FILE
-- (with $AUTHORIZATION as the authorization header, when set) and, at the end, prints one
-- line of key=value fields: requests, errors (connect, read, write, timeout, non-2xx),
-- requests/s and latency percentiles in microseconds.

local f = assert(io.open(os.getenv("BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["content-type"] = "application/json"
local auth = os.getenv("AUTHORIZATION")
if auth and auth ~= "" then
  wrk.headers["authorization"] = auth
end

function done(summary, latency, requests)
  local e = summary.errors
  local errors = e.connect + e.read + e.write + e.timeout + e.status
  io.write(string.format(
    "requests=%d errors=%d rps=%.1f p50_us=%d p99_us=%d max_us=%d\n",
    summary.requests, errors, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99), latency.max))
end
