-- wrk script: MCP tools/call over streamable HTTP, every response checked.
--
--   wrk -t2 -c16 -d8s --latency -s loadtest/tools_call.lua URL -- TOOL [VERSION]   (or MCP_TOOL=TOOL)
--
-- VERSION 2026-07-28 (the default): stateless, the protocol fields in `_meta` and the
-- Mcp-Method/Mcp-Name headers on every request. VERSION 2025-11-25 (or another handshake-era
-- version): requests within a session opened before the run (initialize, then
-- notifications/initialized), whose id comes with -H "Mcp-Session-Id: ...".
--
-- Headers given with wrk's -H (e.g. -H "Authorization: Bearer ...") are sent along with these.
--
-- A response counts as an error unless it is HTTP 200 with a JSON-RPC "result" in the body
-- that is not a tool error ("isError": true).
-- done() prints one line, `WRK_JSON {...}`, with requests, duration, latency percentiles (us)
-- and error counts (bad status, bad body, socket errors) plus the first bad response seen.

status_errors = 0
body_errors = 0
first_bad = ""

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

local function has_header(wanted)
  for name, _ in pairs(wrk.headers) do
    if string.lower(name) == wanted then
      return true
    end
  end
  return false
end

function init(args)
  local name = args[1] or os.getenv("MCP_TOOL")
  if not name or name == "" then
    error("name the tool: wrk ... -s tools_call.lua URL -- TOOL (or set MCP_TOOL)")
  end
  local version = args[2] or "2026-07-28"
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Accept"] = "application/json, text/event-stream"
  wrk.headers["MCP-Protocol-Version"] = version
  if version ~= "2026-07-28" then
    if not has_header("mcp-session-id") then
      error("version " .. version .. " calls within a session: pass -H 'Mcp-Session-Id: ...'")
    end
    wrk.body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"' .. name ..
      '","arguments":{"text":"hello"}}}'
    return
  end
  wrk.headers["Mcp-Method"] = "tools/call"
  wrk.headers["Mcp-Name"] = name
  wrk.body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"' .. name ..
    '","arguments":{"text":"hello"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28",' ..
    '"io.modelcontextprotocol/clientCapabilities":{},' ..
    '"io.modelcontextprotocol/clientInfo":{"name":"bench","version":"1"}}}}'
end

function response(status, headers, body)
  if status ~= 200 then
    status_errors = status_errors + 1
  elseif not (body and string.find(body, '"result"', 1, true)) or string.find(body, '"isError"%s*:%s*true') then
    body_errors = body_errors + 1
  else
    return
  end
  if first_bad == "" then
    first_bad = string.format("HTTP %d: %s", status, string.sub(body or "", 1, 300))
  end
end

local function quote(text)
  return '"' .. string.gsub(text, '[%c"\\]', function(c)
    return string.format("\\u%04x", string.byte(c))
  end) .. '"'
end

function done(summary, latency, requests)
  local status, body, sample = 0, 0, ""
  for _, thread in ipairs(threads) do
    status = status + (thread:get("status_errors") or 0)
    body = body + (thread:get("body_errors") or 0)
    if sample == "" then
      sample = thread:get("first_bad") or ""
    end
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"status_errors":%d,"body_errors":%d,"socket_errors":%d,"timeouts":%d,"first_bad":%s}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, status, body, e.connect + e.read + e.write, e.timeout, quote(sample)))
end
