-- wrk script: POST pre-generated webhooks in turn, one per request, from a file of lines
-- "path<TAB>signature<TAB>body"; done() prints one JSON line with the figures wrk measured.
-- With WRK_DELAY_MS set, each connection waits that long before each request: a paced load.
-- With WRK_TOKEN set, each request carries it as a bearer token (`POST /jobs` bodies, with an
-- empty signature).
local paths, signatures, bodies = {}, {}, {}
count, sent = 0, 0  -- globals, so done() can read them with thread:get
local threads = {}
local token = os.getenv("WRK_TOKEN")

local pause = tonumber(os.getenv("WRK_DELAY_MS") or "")
if pause then
  function delay() return pause end
end

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  for line in io.lines(args[1]) do
    local path, signature, body = line:match("^([^\t]*)\t([^\t]*)\t(.*)$")
    count = count + 1
    paths[count], signatures[count], bodies[count] = path, signature, body
  end
end

function request()
  sent = sent + 1
  local i = (sent - 1) % count + 1
  local headers = {["Content-Type"] = "application/json"}
  if signatures[i] ~= "" then headers["X-Webhook-Signature"] = signatures[i] end
  if token then headers["Authorization"] = "Bearer " .. token end
  return wrk.format("POST", paths[i], headers, bodies[i])
end

function done(summary, latency, requests)
  local sent_total, bodies_total = 0, 0
  for _, thread in ipairs(threads) do
    sent_total = sent_total + thread:get("sent")
    bodies_total = bodies_total + thread:get("count")
  end
  local errors = summary.errors
  io.write(string.format(
    '\nWRK_JSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, ' ..
    '"max_us": %d, "status_errors": %d, "socket_errors": %d, "sent": %d, "bodies": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, errors.status,
    errors.connect + errors.read + errors.write + errors.timeout, sent_total, bodies_total))
end
