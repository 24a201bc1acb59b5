-- GET requests: a random path of BENCH_PATHS (one path with its query string a line), as a random
-- user of BENCH_TOKENS (one JWT a line) when given. Pacing: see pace.lua.
dofile(os.getenv("BENCH_WRK_DIR") .. "/pace.lua")

local paths = lines(os.getenv("BENCH_PATHS"))
local tokens = os.getenv("BENCH_TOKENS") and lines(os.getenv("BENCH_TOKENS")) or {}

function init(args)
  math.randomseed(thread_id * 7919 + math.floor(now() * 1000) % 100000)
end

function request()
  local headers = {}
  if #tokens > 0 then headers["Authorization"] = "Bearer " .. tokens[math.random(#tokens)] end
  return wrk.format("GET", paths[math.random(#paths)], headers)
end
