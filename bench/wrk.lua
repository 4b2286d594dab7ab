-- Requests for wrk, built once before the run (so that wrk spends its core on sending, not on
-- formatting): GET every path of $BENCH_PATHS in turn, or, with $BENCH_BODY, POST that body,
-- signed in turn with each token of $BENCH_TOKENS when it is set, or, with $BENCH_REQUESTS (a
-- file of "Header: value<TAB>body" lines), POST each line's JSON body with its own header, so
-- that every request can name its own buyer and products. At the end, one line "BENCH {json}"
-- with the counts and latencies that bench/run reads.

local function lines(file)
  local out = {}
  if file and #file > 0 then
    for line in io.lines(file) do
      if #line > 0 then out[#out + 1] = line end
    end
  end
  return out
end

local requests = {}

-- Built in init, once wrk has set the Host header (which HTTP/1.1 requires: Node's parser
-- answers 400 without it); wrk.format adds it to every request.
init = function(_)
  local body = os.getenv("BENCH_BODY")
  local method = body and "POST" or "GET"
  local paths = lines(os.getenv("BENCH_PATHS"))
  local tokens = lines(os.getenv("BENCH_TOKENS"))
  if #tokens == 0 then tokens = { false } end
  local each = lines(os.getenv("BENCH_REQUESTS"))
  for _, path in ipairs(paths) do
    if #each > 0 then
      for _, line in ipairs(each) do
        local name, value, payload = line:match("^([^:\t]+):%s*([^\t]*)\t(.+)$")
        assert(name, "not a \"Header: value<TAB>body\" line: " .. line)
        local headers = { ["Content-Type"] = "application/json", [name] = value }
        requests[#requests + 1] = wrk.format("POST", path, headers, payload)
      end
    else
      for _, token in ipairs(tokens) do
        local headers = {}
        if body then headers["Content-Type"] = "application/json" end
        if token then headers["Authorization"] = "Bearer " .. token end
        requests[#requests + 1] = wrk.format(method, path, headers, body)
      end
    end
  end
end

local next_request = 0

request = function()
  next_request = next_request % #requests + 1
  return requests[next_request]
end

done = function(summary, latency, _)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
