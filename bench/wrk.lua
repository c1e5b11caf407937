-- wrk script: POST an image to the URL wrk is given, and print a JSON summary when done.
--   IMAGE=path/to/digit.png           the file to send (required)
--   MODE=multipart|raw                multipart field FIELD (default), or the raw body
--   FIELD=file  COUNT=1               multipart field name, and how many copies of the file to send
local f = assert(io.open(assert(os.getenv("IMAGE"), "set IMAGE"), "rb"))
local data = f:read("*a")
f:close()

wrk.method = "POST"
if os.getenv("MODE") == "raw" then
  wrk.headers["Content-Type"] = "image/png"
  wrk.body = data
else
  local boundary = "wrk-digit-boundary-7MA4YWxkTrZu0gW"
  local field = os.getenv("FIELD") or "file"
  local part = "--" .. boundary .. "\r\n" ..
    'Content-Disposition: form-data; name="' .. field .. '"; filename="digit.png"\r\n' ..
    "Content-Type: image/png\r\n\r\n" .. data .. "\r\n"
  wrk.headers["Content-Type"] = "multipart/form-data; boundary=" .. boundary
  wrk.body = string.rep(part, tonumber(os.getenv("COUNT") or "1")) .. "--" .. boundary .. "--\r\n"
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "seconds": %.3f, "rps": %.1f, "p50_ms": %.3f, "p90_ms": %.3f, "p99_ms": %.3f, ' ..
    '"max_ms": %.3f, "connect_errors": %d, "read_errors": %d, "write_errors": %d, "non_2xx": %d, "timeouts": %d}\n',
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1e3, latency:percentile(90) / 1e3, latency:percentile(99) / 1e3, latency.max / 1e3,
    e.connect, e.read, e.write, e.status, e.timeout))
end
