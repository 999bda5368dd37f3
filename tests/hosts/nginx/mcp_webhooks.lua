-- The gateway side of the nginx test, and a worked example of the Lua module in nginx with
-- lua-nginx-module: one notifier per worker (init_worker), MCP tools/call results and
-- nginx's own limit_req 429s turned into events in the log phase, flushed at worker exit.
local wn = require("webhook_notification")
local cjson = require("cjson.safe")

local M = {}
local notifier

function M.init_worker(config)
    local n, err = wn.new(config, "nginx")
    if not n then
        ngx.log(ngx.ERR, "webhook-notification: ", err)
        return
    end
    notifier = n
end

function M.exit_worker()
    if notifier then
        local ok, err = notifier:close(5)
        if not ok then
            ngx.log(ngx.ERR, "webhook-notification close: ", err)
        end
    end
end

-- access phase: remember which tool a JSON-RPC tools/call names.
function M.access()
    ngx.req.read_body()
    local rpc = cjson.decode(ngx.req.get_body_data() or "")
    if type(rpc) == "table" and rpc.method == "tools/call" and type(rpc.params) == "table" then
        ngx.ctx.tool = rpc.params.name
    end
end

-- body filter: keep the response (up to 64 KiB) for the log phase.
function M.body_filter()
    local chunk = ngx.arg[1]
    local kept = ngx.ctx.response or ""
    if chunk and #kept < 65536 then
        ngx.ctx.response = kept .. chunk
    end
end

local function context()
    return { request_id = ngx.var.request_id, user = ngx.var.http_x_user or ngx.var.remote_addr,
             server_id = "nginx-worker-" .. ngx.worker.pid() }
end

-- log phase: after the response is sent, so nothing here delays the client.
function M.log()
    if not notifier then
        return
    end
    local ok, err
    if ngx.status == 429 then
        ok, err = notifier:notify("rate_limit_exceeded", context(),
            { code = "RATE_LIMIT", reason = "nginx limit_req" }, { path = ngx.var.uri })
    elseif ngx.ctx.tool then
        local rpc = cjson.decode(ngx.ctx.response or "") or {}
        ok, err = notifier:invoke("tool_post_invoke", { name = ngx.ctx.tool, result = rpc.result or rpc.error }, context())
    else
        return
    end
    if ok == nil then
        ngx.log(ngx.ERR, "webhook-notification: ", err)
    end
end

-- POST /event: a tool_success raised before the response is sent (the log phase runs after
-- it), so a client that got its answer knows the event was admitted.
function M.event()
    local ok, err = notifier:notify("tool_success", context(), nil, { tool_name = "search" })
    ngx.status = ok and 200 or 500
    ngx.say(ok and "{}" or err)
end

-- GET /stats, /metrics, /probe: the Lua API's values and its errors, for the test to read.
function M.stats()
    local stats = notifier:stats()
    stats.worker = ngx.worker.pid()
    ngx.say(cjson.encode(stats))
end

function M.metrics()
    ngx.say(notifier:metrics())
end

function M.probe()
    local results = {}
    results.raised = notifier:invoke("prompt_post_fetch", '{"prompt_id": "greeting"}', nil)
    results.quiet = notifier:invoke("prompt_pre_fetch", '{"prompt_id": "greeting"}', nil)
    local ok, err = notifier:invoke("no_such_hook", "{}", nil)
    results.unknown_hook = { ok = ok, err = err }
    ok, err = notifier:invoke("tool_post_invoke", "{not json", nil)
    results.bad_json = { ok = ok, err = err }
    ok, err = notifier:invoke("tool_post_invoke", 42, nil)
    results.bad_type = { ok = ok, err = err }
    -- A hook whose events no webhook takes is answered without reading its documents.
    local narrow = wn.new("webhooks: [{url: 'http://127.0.0.1:9/', events: [tool_success]}]", "probe")
    ok, err = narrow:invoke("prompt_post_fetch", "{not json", nil)
    results.unwanted = { ok = ok, err = err }
    ok, err = narrow:invoke("tool_post_invoke", "{not json", nil)
    results.wanted_bad_json = { ok = ok, err = err }
    -- Silences through the Lua API.
    local id = narrow:silence({ matchers = { "tool=search" }, duration = "1h", comment = "from lua" })
    local listed = narrow:silences()
    local expired = narrow:expire_silence(id or "")
    local again, again_err = narrow:expire_silence(id or "")
    local _, bad_err = narrow:silence({ matchers = { "flavour=x" }, duration = "1h" })
    results.silence = { id = id, listed = type(listed) == "table" and #listed or -1,
        comment = type(listed) == "table" and listed[1] and listed[1].comment, expired = expired,
        again = again == nil and again_err or "expired twice", bad = bad_err }
    narrow:close(0)
    local closed = wn.new("webhooks: []", "probe")
    closed:close(0)
    ok, err = closed:notify("violation", nil, nil, nil)
    results.after_close = { ok = ok, err = err }
    ok, err = wn.new("webhooks: [{url: 'ftp://x'}]", "probe")
    results.bad_config = { ok = ok, err = err }
    -- No argument of any type raises into the gateway: each call returns nil and a message.
    local misuse = {
        notify_number = function() return notifier:notify(123) end,
        notify_table = function() return notifier:notify({}) end,
        hook_number = function() return notifier:invoke(7, "{}") end,
        name_number = function() return wn.new("webhooks: []", 42) end,
        name_table = function() return wn.new("webhooks: []", {}) end,
        config_nul = function() return wn.new("webhooks: []\0trailing", "probe") end,
        payload_nul = function() return notifier:invoke("tool_post_invoke", '{"name": "a"}\0') end,
        flush_text = function() return notifier:flush("abc") end,
        close_text = function() return notifier:close("abc") end,
        dot_call = function() return notifier.stats(5) end,
    }
    -- Loaded again in the same Lua state (what `lua_code_cache off` does per request): the
    -- module must not redefine its C declarations.
    package.loaded["webhook_notification"] = nil
    local reloaded, again = pcall(require, "webhook_notification")
    results.reloaded = reloaded and type(again.new) == "function"
    package.loaded["webhook_notification"] = wn
    results.misuse = {}
    for name, call in pairs(misuse) do
        local raised, value, message = pcall(call)
        results.misuse[name] = { raised = not raised, value = value ~= nil, err = message or value }
    end
    ngx.say(cjson.encode(results))
end

return M
