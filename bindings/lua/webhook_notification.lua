--- webhook_notification: the webhook-notification engine for Lua gateways through LuaJIT's
--- FFI (nginx/OpenResty with lua-nginx-module, Kong, APISIX, Envoy's Lua filter).
---
---   local wn = require("webhook_notification")
---   local n, err = wn.attach(config_text, "MyGateway")  -- or wn.new: an engine of its own
---   local event, err = n:invoke("tool_post_invoke", payload, context)
---
--- Payloads, contexts, violations and metadata are Lua tables (encoded with cjson when it is
--- available) or JSON strings (passed as they are). Every function returns its value (or
--- `true`) on success and `nil, message` on failure: nothing raises into the gateway, and
--- no call waits on the network except `flush` and `close`, which are bounded by their
--- `seconds`. Create handles per worker process (`init_worker_by_lua*`, a plugin's
--- `init_worker`), never in nginx's master before fork: the library refuses a handle created
--- before fork. In Envoy (one Lua state per worker thread, one process) use `attach`, so
--- `--concurrency N` shares one engine.
---
--- The library is found through WEBHOOK_NOTIFICATION_LIB (a path), else package.cpath
--- (`libwebhook_notification.so` or `webhook_notification.so` in one of its directories),
--- else the system loader.

local ffi = require("ffi")

-- BEGIN GENERATED CDEF by build.rs from include/webhook_notification.h; do not edit.
-- Declared once per Lua state: a module loaded again (lua_code_cache off) must not redefine.
if not pcall(ffi.typeof, "WebhookPlugin") then
ffi.cdef[[
enum {
  WEBHOOK_ABI_VERSION = 1,
  WEBHOOK_OK = 0,
  WEBHOOK_INVALID_ARGUMENT = 1,
  WEBHOOK_CONFIG_ERROR = 2,
  WEBHOOK_PARSE_ERROR = 3,
  WEBHOOK_TIMEOUT = 4,
  WEBHOOK_CLOSED = 5,
  WEBHOOK_PANIC = 6,
};
typedef struct WebhookPlugin WebhookPlugin;
uint32_t webhook_abi_version(void);
const char *webhook_version(void);
int32_t webhook_plugin_new(const char *config,
                           const char *plugin_name,
                           WebhookPlugin **out,
                           char **error);
int32_t webhook_plugin_attach(const char *config,
                              const char *plugin_name,
                              WebhookPlugin **out,
                              char **error);
int32_t webhook_plugin_invoke(WebhookPlugin *p,
                              const char *hook,
                              const char *payload_json,
                              const char *context_json,
                              char **result_json,
                              char **error);
int32_t webhook_plugin_invoke_event(WebhookPlugin *p,
                                    const char *hook,
                                    const char *payload_json,
                                    const char *context_json,
                                    int32_t *event_out,
                                    char **error);
int32_t webhook_plugin_wants_hook(const WebhookPlugin *p,
                                  const char *hook,
                                  bool *wanted,
                                  char **error);
const char *webhook_event_name(int32_t index);
int32_t webhook_event_count(void);
int32_t webhook_plugin_notify(WebhookPlugin *p,
                              const char *event,
                              const char *context_json,
                              const char *violation_json,
                              const char *metadata_json,
                              char **error);
int32_t webhook_plugin_flush(WebhookPlugin *p, uint32_t timeout_ms, char **error);
int32_t webhook_plugin_stats(const WebhookPlugin *p, char **stats_json, char **error);
int32_t webhook_plugin_silence_add(WebhookPlugin *p,
                                   const char *silence_json,
                                   char **id_out,
                                   char **error);
int32_t webhook_plugin_silences(const WebhookPlugin *p, char **json_out, char **error);
int32_t webhook_plugin_silence_expire(WebhookPlugin *p, const char *id, char **error);
int32_t webhook_plugin_metrics(const WebhookPlugin *p, char **text, char **error);
int32_t webhook_plugin_close(WebhookPlugin *p, uint32_t timeout_ms, char **error);
int32_t webhook_plugin_shutdown(WebhookPlugin *p, char **error);
void webhook_plugin_free(WebhookPlugin *p);
void webhook_string_free(char *s);
]]
end
-- END GENERATED CDEF

local M = { _VERSION = "0.1.0" }

local lib, load_error

--- Event names by the index `webhook_plugin_invoke_event` reports (filled once loaded).
local event_names = {}

--- The shared library, loaded on first use (so `require` never fails for want of it).
local function library()
    if lib or load_error then
        return lib, load_error
    end
    local candidates = {}
    local path = os.getenv("WEBHOOK_NOTIFICATION_LIB")
    if path and path ~= "" then
        candidates[1] = path
    else
        for template in package.cpath:gmatch("[^;]+") do
            for _, name in ipairs({ "libwebhook_notification", "webhook_notification" }) do
                local candidate = template:gsub("%?", name)
                local file = io.open(candidate, "rb")
                if file then
                    file:close()
                    candidates[#candidates + 1] = candidate
                end
            end
        end
        candidates[#candidates + 1] = "webhook_notification"
    end
    local reasons = {}
    for _, candidate in ipairs(candidates) do
        local ok, loaded = pcall(ffi.load, candidate)
        if ok then
            -- The ABI this module's declarations were generated for (bumped on any break).
            local abi = tonumber(loaded.webhook_abi_version())
            if abi == tonumber(loaded.WEBHOOK_ABI_VERSION) then
                lib = loaded
                for i = 0, tonumber(lib.webhook_event_count()) - 1 do
                    event_names[i] = ffi.string(lib.webhook_event_name(i))
                end
                return lib
            end
            reasons[#reasons + 1] = candidate .. " has ABI version " .. abi .. ", this module needs "
                .. tonumber(loaded.WEBHOOK_ABI_VERSION)
        else
            reasons[#reasons + 1] = tostring(loaded)
        end
    end
    load_error = "cannot load libwebhook_notification (set WEBHOOK_NOTIFICATION_LIB): "
        .. table.concat(reasons, "; ")
    return nil, load_error
end

local has_cjson, cjson = pcall(require, "cjson.safe")

--- `text` when it is a string the C side can take whole (a NUL byte would end it early), else
--- nil and why, naming `name`.
local function c_string(text, name)
    if type(text) ~= "string" then
        return nil, name .. " must be a string"
    end
    if text:find("\0", 1, true) then
        return nil, name .. " contains a NUL byte"
    end
    return text
end

--- JSON text for a host value: nil stays NULL, strings pass through, tables need cjson.
local function json(value, name)
    if value == nil then
        return nil
    end
    local kind = type(value)
    if kind == "string" then
        return c_string(value, name)
    end
    if kind ~= "table" then
        return nil, name .. " must be a table or a JSON string"
    end
    if not has_cjson then
        return nil, name .. " is a table but lua-cjson is not available: pass a JSON string"
    end
    local text, err = cjson.encode(value)
    if not text then
        return nil, name .. ": " .. tostring(err)
    end
    return text
end

--- A C string the library allocated, as a Lua string (nil for NULL); freed.
local function take_string(pointer)
    if pointer == nil then
        return nil
    end
    local text = ffi.string(pointer)
    lib.webhook_string_free(pointer)
    return text
end

--- `nil, message` for a failed status (the library's message, freed), or nothing.
local function failure(status, err)
    if status == lib.WEBHOOK_OK then
        return nil
    end
    return take_string(err[0]) or ("webhook-notification status " .. tonumber(status))
end

-- Out-parameters reused by every call: a Lua state runs one call at a time.
local event_out, err_out = ffi.new("int32_t[1]"), ffi.new("char *[1]")

--- Whether some webhook of `handle` takes an event a call of `hook` can raise; nil and why
--- for a hook name that is not one.
local function wants(handle, hook)
    local name, nerr = c_string(hook, "hook")
    if not name then
        return nil, nerr
    end
    local wanted = ffi.new("bool[1]")
    local message = failure(lib.webhook_plugin_wants_hook(handle, name, wanted, err_out), err_out)
    if message then
        return nil, message
    end
    return wanted[0]
end

local Notifier = {}
Notifier.__index = Notifier

--- A handle from `webhook_plugin_new` or `webhook_plugin_attach`. A handle collected without
--- `close` never blocks the worker: an attached one detaches; an own one is closed at once
--- (what is still queued is abandoned and counted as dropped, unless a durable outbox keeps
--- it), so call `close(seconds)` when the worker exits.
local function open(constructor, config, plugin_name)
    local loaded, why = library()
    if not loaded then
        return nil, why
    end
    if type(config) == "table" then
        local text, err = json(config, "config")
        if not text then
            return nil, err
        end
        config = text
    end
    if type(config) ~= "string" then
        return nil, "config must be YAML or JSON text, or a table"
    end
    local cerr
    config, cerr = c_string(config, "config")
    if not config then
        return nil, cerr
    end
    if plugin_name ~= nil then
        local nerr
        plugin_name, nerr = c_string(plugin_name, "plugin_name")
        if not plugin_name then
            return nil, nerr
        end
    end
    local out = ffi.new("WebhookPlugin *[1]")
    local err = ffi.new("char *[1]")
    local message = failure(lib[constructor](config, plugin_name, out, err), err)
    if message then
        return nil, message
    end
    local attached = constructor == "webhook_plugin_attach"
    local handle = ffi.gc(out[0], function(p)
        if not attached then
            lib.webhook_plugin_close(p, 0, nil)
        end
        lib.webhook_plugin_free(p)
    end)
    -- `wanted`: per hook name, whether any webhook takes its events (asked once).
    return setmetatable({ handle = handle, attached = attached, wanted = {} }, Notifier)
end

--- A notifier with an engine of its own (nginx workers, Kong/APISIX `init_worker`).
function M.new(config, plugin_name)
    return open("webhook_plugin_new", config, plugin_name)
end

--- A notifier attached to the process-wide engine of this config (Envoy's worker threads).
function M.attach(config, plugin_name)
    return open("webhook_plugin_attach", config, plugin_name)
end

--- The library's version, or nil and why it cannot be loaded.
function M.version()
    local loaded, why = library()
    if not loaded then
        return nil, why
    end
    return ffi.string(lib.webhook_version())
end

local function usable(self)
    if type(self) ~= "table" then
        return nil, "call methods with a colon: n:invoke(...)"
    end
    if self.handle == nil then
        return nil, "the notifier is closed"
    end
    return self.handle
end

--- Classifies a hook call (`tool_post_invoke`, `prompt_post_fetch`, …) and queues its
--- event; returns the event's name, or false when the call raised none.
function Notifier:invoke(hook, payload, context)
    local handle, closed = usable(self)
    if not handle then
        return nil, closed
    end
    -- A hook no webhook takes costs a table lookup: nothing is encoded, nothing crosses to C.
    local wanted = self.wanted[hook]
    if wanted == nil then
        local werr
        wanted, werr = wants(handle, hook)
        if wanted == nil then
            return nil, werr
        end
        self.wanted[hook] = wanted
    end
    if not wanted then
        return false
    end
    local payload_text, perr = json(payload, "payload")
    if perr then
        return nil, perr
    end
    local context_text, cerr = json(context, "context")
    if cerr then
        return nil, cerr
    end
    local message = failure(lib.webhook_plugin_invoke_event(handle, hook, payload_text, context_text, event_out, err_out), err_out)
    if message then
        return nil, message
    end
    return event_names[tonumber(event_out[0])] or false
end

--- Raises `event` directly; `context`, `violation` and `metadata` are tables or JSON text
--- (a violation's reason alone: `{reason = "…"}`).
function Notifier:notify(event, context, violation, metadata)
    local handle, closed = usable(self)
    if not handle then
        return nil, closed
    end
    local eerr
    event, eerr = c_string(event, "event")
    if not event then
        return nil, eerr
    end
    local texts = {}
    for i, pair in ipairs({ { context, "context" }, { violation, "violation" }, { metadata, "metadata" } }) do
        local text, err = json(pair[1], pair[2])
        if err then
            return nil, err
        end
        texts[i] = text
    end
    local err = ffi.new("char *[1]")
    local message = failure(lib.webhook_plugin_notify(handle, event, texts[1], texts[2], texts[3], err), err)
    if message then
        return nil, message
    end
    return true
end

--- `seconds` (default 5) as whole milliseconds for the C side, or nil and why.
local function milliseconds(seconds)
    local value = seconds == nil and 5 or tonumber(seconds)
    if type(seconds) ~= "number" and seconds ~= nil or value == nil or value ~= value then
        return nil, "seconds must be a number"
    end
    return math.max(0, math.min(math.floor(value * 1000), 4294967295))
end

--- Waits at most `seconds` (default 5) until nothing is queued or in flight.
function Notifier:flush(seconds)
    local handle, closed = usable(self)
    if not handle then
        return nil, closed
    end
    local ms, merr = milliseconds(seconds)
    if not ms then
        return nil, merr
    end
    local err = ffi.new("char *[1]")
    local message = failure(lib.webhook_plugin_flush(handle, ms, err), err)
    if message then
        return nil, message
    end
    return true
end

--- The text a C function `fetch(handle, &out, &error)` returns (stats JSON, metrics).
local function fetch_text(self, fetch)
    local handle, closed = usable(self)
    if not handle then
        return nil, closed
    end
    local out, err = ffi.new("char *[1]"), ffi.new("char *[1]")
    local message = failure(fetch(handle, out, err), err)
    if message then
        return nil, message
    end
    return take_string(out[0])
end

--- A JSON document the library hands out: a table when cjson is available, else the text.
local function fetch_json(self, fetch)
    local text, err = fetch_text(self, fetch)
    if not text then
        return nil, err
    end
    if has_cjson then
        return cjson.decode(text)
    end
    return text
end

--- The stats: a table when cjson is available, else the JSON text.
function Notifier:stats()
    return fetch_json(self, lib.webhook_plugin_stats)
end

--- Adds a silence (a table, or JSON text: `{matchers = {"tool=search"}, duration = "2h"}`)
--- to the outbox's store; returns its id. Events matching it are sent to no webhook while it
--- is active. Talks to the store: call it from an admin location, not a hot path.
function Notifier:silence(spec)
    local handle, closed = usable(self)
    if not handle then
        return nil, closed
    end
    local text, err = json(spec, "silence")
    if not text then
        return nil, err or "silence is required"
    end
    local id = ffi.new("char *[1]")
    local message = failure(lib.webhook_plugin_silence_add(handle, text, id, err_out), err_out)
    if message then
        return nil, message
    end
    return take_string(id[0])
end

--- The silences not yet ended: a table with cjson, else JSON text.
function Notifier:silences()
    return fetch_json(self, lib.webhook_plugin_silences)
end

--- Ends the silence `id` now; true, or nil and why.
function Notifier:expire_silence(id)
    local handle, closed = usable(self)
    if not handle then
        return nil, closed
    end
    local text, err = c_string(id, "id")
    if not text then
        return nil, err
    end
    local message = failure(lib.webhook_plugin_silence_expire(handle, text, err_out), err_out)
    if message then
        return nil, message
    end
    return true
end

--- The Prometheus text exposition of the engine.
function Notifier:metrics()
    return fetch_text(self, lib.webhook_plugin_metrics)
end

--- Closes an own engine, delivering what is pending for at most `seconds` (default 5; what
--- is left is counted as dropped, or kept by a durable outbox), or detaches an attached
--- handle at once. Idempotent; the handle is unusable afterwards.
function Notifier:close(seconds)
    if type(self) ~= "table" then
        return nil, "call methods with a colon: n:close(...)"
    end
    local handle = self.handle
    if handle == nil then
        return true
    end
    local ms, merr = milliseconds(seconds)
    if not ms then
        return nil, merr
    end
    self.handle = nil
    local message
    if not self.attached then
        local err = ffi.new("char *[1]")
        message = failure(lib.webhook_plugin_close(handle, ms, err), err)
    end
    ffi.gc(handle, nil)
    lib.webhook_plugin_free(handle)
    if message then
        return nil, message
    end
    return true
end

M.Notifier = Notifier
return M
