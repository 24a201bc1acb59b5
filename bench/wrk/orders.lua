-- PlaceOrder through the gateway: a random user (BENCH_TOKENS: one JWT a line) orders BENCH_ITEMS
-- (default 1) distinct products drawn from BENCH_PRODUCTS (one product id a line), one unit each.
-- With BENCH_REPLIES set, every 201's `position` and the moment it arrived (CLOCK_MONOTONIC) are
-- written there, one "position seconds" line each, for the lag stage. Pacing: see pace.lua.
dofile(os.getenv("BENCH_WRK_DIR") .. "/pace.lua")

local tokens = lines(os.getenv("BENCH_TOKENS"))
local products = lines(os.getenv("BENCH_PRODUCTS"))
local items = tonumber(os.getenv("BENCH_ITEMS") or "1")
local record = os.getenv("BENCH_REPLIES") ~= nil
statuses = {}
replies = {}

function init(args)
  math.randomseed(thread_id * 7919 + math.floor(now() * 1000) % 100000)
end

function request()
  local first = math.random(#products)
  local lines_ = {}
  for i = 0, items - 1 do
    local product = products[(first + i - 1) % #products + 1]
    lines_[#lines_ + 1] = '{"product_id":"' .. product .. '","quantity":1}'
  end
  local body = '{"items":[' .. table.concat(lines_, ",") .. "]}"
  local headers = {
    ["Authorization"] = "Bearer " .. tokens[math.random(#tokens)],
    ["Content-Type"] = "application/json",
  }
  return wrk.format("POST", "/v1/orders", headers, body)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if record and status == 201 then
    local position = body:match('"position":(%d+)')
    replies[#replies + 1] = position .. " " .. string.format("%.6f", now())
  end
end

function done_extra()
  local counts, out = {}, nil
  if record then out = io.open(os.getenv("BENCH_REPLIES"), "w") end
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do counts[status] = (counts[status] or 0) + count end
    if out then
      for _, line in ipairs(thread:get("replies")) do out:write(line, "\n") end
    end
  end
  if out then out:close() end
  local parts = {}
  for status, count in pairs(counts) do parts[#parts + 1] = '"' .. status .. '": ' .. count end
  return ', "statuses": {' .. table.concat(parts, ", ") .. "}"
end
