-- report.lua: wrk script that prints one machine-readable line after the run.
--
--   wrk ... --latency -s report.lua URL
--
-- The line starts with "BENCH-JSON " followed by a JSON object: requests, duration_us, bytes,
-- rps, latency percentiles in microseconds (p50, p90, p99, max, mean), and every error counter
-- (connect, read, write, timeout, status = responses that were not 2xx/3xx).

done = function(summary, latency, requests)
   local e = summary.errors
   local seconds = summary.duration / 1e6
   io.write(string.format(
      'BENCH-JSON {"requests":%d,"duration_us":%d,"bytes":%d,"rps":%.3f,' ..
      '"p50_us":%.1f,"p90_us":%.1f,"p99_us":%.1f,"max_us":%.1f,"mean_us":%.1f,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d,"status":%d}}\n',
      summary.requests, summary.duration, summary.bytes, summary.requests / seconds,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
      e.connect, e.read, e.write, e.timeout, e.status))
end
