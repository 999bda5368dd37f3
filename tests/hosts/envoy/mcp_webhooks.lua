-- The Lua filter of the Envoy test, and a worked example of the module in Envoy: Envoy runs
-- this code once per worker thread (one Lua state each), so it attaches to the process-wide
-- engine (`wn.attach`): `--concurrency N` makes one engine, and a Lua state torn down never
-- waits on the network. Envoy's Lua has `ffi` but no cjson: JSON goes in as strings.
-- WEBHOOK_CONFIG is prepended by whoever loads this file (the test writes it inline).
local wn = require("webhook_notification")
local notifier, open_error = wn.attach(WEBHOOK_CONFIG, "envoy")

local function quoted(text)
    return '"' .. tostring(text):gsub('[%c"\\]', function(c)
        return string.format("\\u%04x", c:byte())
    end) .. '"'
end

function envoy_on_request(handle)
    local path = handle:headers():get(":path")
    if path == "/stats" then
        local stats, err = notifier and notifier:stats()
        handle:respond({ [":status"] = stats and "200" or "500" }, stats or tostring(err or open_error))
        return
    end
    local tool = ""
    if path == "/mcp" then
        -- Buffering the body yields: read it before taking objects that must not outlive a yield.
        local body = handle:body()
        local text = body and body:getBytes(0, body:length()) or ""
        tool = text:match('"method"%s*:%s*"tools/call"') and text:match('"name"%s*:%s*"([^"]+)"') or ""
    end
    local metadata = handle:streamInfo():dynamicMetadata()
    metadata:set("webhook", "path", path)
    metadata:set("webhook", "user", handle:headers():get("x-user") or "")
    metadata:set("webhook", "tool", tool)
end

function envoy_on_response(handle)
    if not notifier then
        return
    end
    local seen = handle:streamInfo():dynamicMetadata():get("webhook") or {}
    local context = '{"user": ' .. quoted(seen.user or "") .. "}"
    local ok, err = true, nil
    if handle:headers():get(":status") == "429" then
        ok, err = notifier:notify("rate_limit_exceeded", context,
            '{"code": "RATE_LIMIT", "reason": "envoy local_ratelimit"}', '{"path": ' .. quoted(seen.path) .. "}")
    elseif seen.tool and seen.tool ~= "" then
        ok, err = notifier:invoke("tool_post_invoke", '{"name": ' .. quoted(seen.tool) .. ', "result": {}}', context)
    end
    if ok == nil then
        handle:logErr("webhook-notification: " .. tostring(err))
    end
end
