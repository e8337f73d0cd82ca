-- wrk script for the read benchmarks: every request reads one random subject of the
-- preloaded dataset ("bench/q/<n>", predicate "bench_claim").
--   wrk -t2 -c64 -d10s -s bench/query.lua http://127.0.0.1:PORT -- SUBJECTS [ENDPOINT] [LENS]
-- ENDPOINT is query (default), skeptic or layered; LENS (default authority) is sent only
-- to /v1/query, because the other two endpoints take no lens.
-- done() prints one "wrk_result key=value ..." line for bench/run.sh.

local next_thread_id = 0

function setup(thread)
   thread:set("thread_id", next_thread_id)
   next_thread_id = next_thread_id + 1
end

function init(args)
   subjects = tonumber(args[1])
   if subjects == nil or subjects < 1 then
      error("query.lua needs the number of preloaded subjects as its first argument")
   end
   endpoint = args[2] or "query"
   if endpoint ~= "query" and endpoint ~= "skeptic" and endpoint ~= "layered" then
      error("query.lua: invalid endpoint '" .. endpoint .. "'; use query, skeptic or layered")
   end
   lens_parameter = ""
   if endpoint == "query" then
      lens_parameter = "&lens=" .. (args[3] or "authority")
   end
   -- A fixed seed per thread makes runs comparable, and the threads still differ.
   math.randomseed(7919 * (thread_id + 1))
end

function request()
   local subject = math.random(0, subjects - 1)
   local path = "/v1/" .. endpoint .. "?subject=bench%2Fq%2F" .. subject ..
      "&predicate=bench_claim" .. lens_parameter
   return wrk.format("GET", path)
end

function done(summary, latency, requests)
   local seconds = summary.duration / 1e6
   local errors = summary.errors
   io.write(string.format(
      "wrk_result requests=%d seconds=%.3f requests_per_sec=%.1f p50_ms=%.3f " ..
      "p99_ms=%.3f max_ms=%.3f status_errors=%d socket_errors=%d\n",
      summary.requests, seconds, summary.requests / seconds,
      latency:percentile(50) / 1e3, latency:percentile(99) / 1e3, latency.max / 1e3,
      errors.status, errors.connect + errors.read + errors.write + errors.timeout))
end
