#!/usr/bin/env bash
# The hook inside a real Lua gateway: wrk through nginx + lua-nginx-module, a location that
# answers without a hook (`plain`), with an empty `log_by_lua` (`logged`: the log phase's own
# cost), with a `log_by_lua` hook calling bindings/lua whose event is delivered to RECEIVER for
# every request (`hooked`: the deliveries share the 2 cores), and with the same hook into a
# digest webhook (`digest`: one message per second); then as a gateway does, proxying to an
# upstream (RECEIVER's server, keep-alive) without (`proxied`) and with the digest hook
# (`proxied-digest`); v4: a batching webhook taking every event (`batched`, `proxied-batched`),
# and a hook whose events no webhook takes (`unwanted`: decided from the hook name alone); at
# the end, how many of the batching webhook's events were delivered and dropped.
# Interleaved runs; prints one JSON row per run.
# Usage: bash tests/bench/lua_gateway.sh OUT_DIR RECEIVER_URL LIBRARY
set -euo pipefail
OUT=$1 RECEIVER=$2 LIB=$3
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$OUT/lua-gateway"
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > "$OUT/lua-gateway/nginx.conf" <<NGINX
load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
user root;
worker_processes 1;
pid $OUT/lua-gateway/nginx.pid;
error_log $OUT/lua-gateway/error.log;
env WEBHOOK_NOTIFICATION_LIB;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $OUT; proxy_temp_path $OUT; fastcgi_temp_path $OUT; uwsgi_temp_path $OUT; scgi_temp_path $OUT;
  keepalive_requests 10000000;
  lua_package_path "$ROOT/bindings/lua/?.lua;;";
  init_worker_by_lua_block {
    notifier = assert(require("webhook_notification").new([[{"queue_capacity": 100000,
      "webhooks": [{"url": "$RECEIVER", "events": ["tool_success"], "max_concurrency": 64}]}]], "bench"))
    digesting = assert(require("webhook_notification").new([[{"webhooks": [{"url": "$RECEIVER",
      "events": ["tool_success"], "digest": {"group_by": ["tool"], "group_interval": "1s"}}]}]], "bench-digest"))
    batching = assert(require("webhook_notification").new([[{"queue_capacity": 100000, "webhooks": [{"url": "$RECEIVER",
      "events": ["tool_success"], "batch": {"max_events": 500, "max_wait": "100ms"}}]}]], "bench-batch"))
    unwanted = assert(require("webhook_notification").new([[{"webhooks": [{"url": "$RECEIVER",
      "events": ["prompt_success"]}]}]], "bench-unwanted"))
  }
  upstream mcp { server $(python3 -c 'import sys, urllib.parse; print(urllib.parse.urlsplit(sys.argv[1]).netloc)' "$RECEIVER"); keepalive 64; }
  server {
    listen 127.0.0.1:$PORT;
    location = /plain { content_by_lua_block { ngx.say("ok") } }
    location = /hooked {
      content_by_lua_block { ngx.say("ok") }
      log_by_lua_block { notifier:invoke("tool_post_invoke", '{"name": "search", "result": {}}', nil) }
    }
    location = /invoke-cost {
      content_by_lua_block {
        local notifiers = {digest = digesting, unwanted = unwanted, batched = batching}
        local which = ngx.var.arg_which
        local n = notifiers[which]
        local calls = 100000
        ngx.update_time()
        local started = ngx.now()
        for _ = 1, calls do
          n:invoke("tool_post_invoke", '{"name": "search", "result": {}}', '{"user": "alice"}')
        end
        ngx.update_time()
        ngx.say(string.format('{"bench": "lua-invoke", "notifier": "%s", "calls": %d, "us_per_call": %.3f}', which, calls, (ngx.now() - started) * 1e6 / calls))
      }
    }
    location = /batch-stats {
      content_by_lua_block {
        batching:flush(30)
        local w = batching:stats().webhooks[1]
        ngx.say(string.format('{"bench": "lua-gateway-batched", "delivered": %d, "dropped": %d, "batches": %d}', w.delivered, w.dropped, w.batches))
      }
    }
    location = /logged {
      content_by_lua_block { ngx.say("ok") }
      log_by_lua_block { local status = ngx.status }
    }
    location = /proxied { proxy_pass http://mcp/tool; proxy_http_version 1.1; proxy_set_header Connection ""; }
    location = /proxied-digest {
      proxy_pass http://mcp/tool; proxy_http_version 1.1; proxy_set_header Connection "";
      log_by_lua_block { digesting:invoke("tool_post_invoke", '{"name": "search", "result": {}}', nil) }
    }
    location = /batched {
      content_by_lua_block { ngx.say("ok") }
      log_by_lua_block { batching:invoke("tool_post_invoke", '{"name": "search", "result": {}}', nil) }
    }
    location = /proxied-batched {
      proxy_pass http://mcp/tool; proxy_http_version 1.1; proxy_set_header Connection "";
      log_by_lua_block { batching:invoke("tool_post_invoke", '{"name": "search", "result": {}}', nil) }
    }
    location = /unwanted {
      content_by_lua_block { ngx.say("ok") }
      log_by_lua_block { unwanted:invoke("tool_post_invoke", '{"name": "search", "result": {}}', nil) }
    }
    location = /digest {
      content_by_lua_block { ngx.say("ok") }
      log_by_lua_block { digesting:invoke("tool_post_invoke", '{"name": "search", "result": {}}', nil) }
    }
  }
}
NGINX
WEBHOOK_NOTIFICATION_LIB=$LIB LOG_LEVEL=off nginx -c "$OUT/lua-gateway/nginx.conf"
trap 'kill "$(cat "$OUT/lua-gateway/nginx.pid")" 2>/dev/null || true' EXIT
until curl -sf "http://127.0.0.1:$PORT/plain" >/dev/null; do sleep 0.05; done
# One invoke from Lua (JSON strings in) on the worker's thread, 100,000 in a loop, three times.
for run in 1 2 3; do
    for which in digest unwanted; do curl -sf "http://127.0.0.1:$PORT/invoke-cost?which=$which"; done
done
# Each row also gives the worker process's CPU per request (its delivery thread included, from
# /proc, 10 ms ticks): steadier than requests/s on a noisy machine, since it does not depend on
# how much of the 2 cores wrk and the receiver got during the run.
WORKER=$(pgrep -P "$(cat "$OUT/lua-gateway/nginx.pid")" | head -1)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$WORKER/stat"; }
for run in 1 2 3; do
    for location in plain logged hooked digest batched unwanted proxied proxied-digest proxied-batched; do
        before=$(cpu_ticks)
        report=$(wrk -t1 -c32 -d5s "http://127.0.0.1:$PORT/$location")
        ticks=$(($(cpu_ticks) - before))
        awk -v run=$run -v location=$location -v ticks=$ticks '
            /requests in/ {requests = $1}
            /Requests\/sec/ {rate = $2}
            END {printf "{\"bench\": \"lua-gateway\", \"location\": \"%s\", \"run\": %d, \"per_second\": %s, \"cpu_us_per_request\": %.3f}\n", location, run, rate, ticks * 10000 / requests}' <<<"$report"
    done
done
# What became of the batching webhook's events over every run: a faster gateway bought by
# dropping events would not count.
curl -sf "http://127.0.0.1:$PORT/batch-stats"
