-- Shared by the wrk scripts (loaded with dofile): a monotonic clock, an optional fixed request
-- rate, and one JSON summary line on stdout. Configured through environment variables because
-- wrk decides whether `delay` exists before it hands the script its arguments.
--
-- BENCH_RATE (requests/s, all threads together; 0 or unset: as fast as the connections go) and
-- BENCH_THREADS (the -t given to wrk). wrk2 is not in Debian, so the rate is kept here: each thread
-- hands out send slots every threads/rate seconds and `delay()` holds a connection until its slot.
-- A slot in the past is sent at once (the schedule catches up), and latency is measured from the
-- actual send, not from the slot: when the server falls behind, queueing before the send is not
-- counted (no coordinated-omission correction). The achieved rate is reported beside the offered.
local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local timespec = ffi.new("bench_timespec")

function now() -- CLOCK_MONOTONIC, the clock of Python's time.monotonic()
  ffi.C.clock_gettime(1, timespec)
  return tonumber(timespec.tv_sec) + tonumber(timespec.tv_nsec) * 1e-9
end

function lines(path) -- the non-empty lines of a file
  local found = {}
  for line in io.lines(path) do
    if line ~= "" then found[#found + 1] = line end
  end
  return found
end

local rate = tonumber(os.getenv("BENCH_RATE") or "0")
if rate > 0 then
  local interval = tonumber(os.getenv("BENCH_THREADS") or "1") / rate
  local next_slot = nil
  function delay()
    local t = now()
    next_slot = next_slot or t
    local slot = next_slot
    next_slot = slot + interval
    return math.max(0, math.floor((slot - t) * 1000))
  end
end

threads = {}
local thread_count = 0
function setup(thread)
  thread_count = thread_count + 1
  thread:set("thread_id", thread_count)
  threads[#threads + 1] = thread
end

function summary_json(summary, latency, extra)
  local e = summary.errors
  return string.format(
    '{"requests": %d, "duration_us": %d, "bytes": %d, "errors": {"connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d}, "latency_us": {"mean": %.1f, "max": %d, "p50": %d, "p90": %d, ' ..
    '"p99": %d, "p99.9": %d}%s}',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), extra or "")
end

function done(summary, latency, requests)
  io.write("BENCH_JSON " .. summary_json(summary, latency, done_extra and done_extra() or "") .. "\n")
end
