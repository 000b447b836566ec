-- bench/wrk.lua: the request side of every workload bench/harness.py runs
-- with wrk. The harness writes a prelude of globals before this file
-- (WORKLOAD, HOST_PATH, HEADERS, LINES_FILE, BODY) and runs the two as one
-- script. Each wrk thread has its own Lua state: `setup` numbers them so
-- created records never collide between threads.

local thread_count = 0
function setup(thread)
  thread_count = thread_count + 1
  thread:set("thread_id", thread_count)
end

local lines = {}
local counter = 0

-- About 760 bytes of free text, as in the seeded W1 profiles.
local function notes()
  local words = { "patient", "reported", "follow-up", "allergy", "medication", "review", "scheduled", "history",
    "declined", "consent", "referral", "specialist", "results", "pending", "stable", "improving" }
  local parts, len, i = {}, 0, 0
  while len < 760 do
    i = i + 1
    local w = words[(i * 7) % #words + 1]
    parts[#parts + 1] = w
    len = len + #w + 1
  end
  return table.concat(parts, " ")
end
local NOTES = notes()

function init(args)
  math.randomseed(os.time() * 1000 + (thread_id or 0))
  for k, v in pairs(HEADERS) do
    wrk.headers[k] = v
  end
  if LINES_FILE then
    for line in io.lines(LINES_FILE) do
      lines[#lines + 1] = line
    end
  end
end

local function pick()
  return lines[math.random(#lines)]
end

local function profile_body(n)
  return string.format('{"fields":{"full_name":"Ada Lovelace","email":"w1.%d.%d@example.com",' ..
    '"phone":"+351 21 %03d %04d","notes":"%s","stage":"interview","score":%d.5,"remote":true,' ..
    '"city":"Lisbon","country":"PT","joined":"2021-03-14"}}', thread_id, n, n % 1000, n % 10000, NOTES, n % 100)
end

function request()
  counter = counter + 1
  if WORKLOAD == "create" then
    return wrk.format("POST", HOST_PATH, nil, profile_body(counter))
  elseif WORKLOAD == "get" then
    return wrk.format("GET", HOST_PATH .. pick())
  elseif WORKLOAD == "post_line" then
    return wrk.format("POST", HOST_PATH, nil, pick())
  elseif WORKLOAD == "kv_write" then
    return wrk.format("POST", string.format("%s%d-%d", HOST_PATH, thread_id, counter), nil,
      string.format('{"data":{"notes":"%s","n":%d}}', NOTES, counter))
  else
    return wrk.format("POST", HOST_PATH, nil, BODY)
  end
end

function done(summary, latency, requests)
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"errors":{"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d},"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.status, summary.errors.timeout, latency:percentile(50),
    latency:percentile(90), latency:percentile(99), latency.mean, latency.max))
end
