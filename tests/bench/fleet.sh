#!/usr/bin/env bash
# Fleet on Redis rows of BENCHMARKS.md (run by tests/bench/run.sh): deliveries/s through a
# Redis Cluster outbox (three local primaries) against a single redis-server, and the hook cost
# into a digesting webhook with a Redis outbox (fleet digest) against none (process digest),
# interleaved (three throughput runs; five hook rounds in one process). Servers are stopped by pid.
# Usage: fleet.sh OUT_DIR BENCH_BINARY FAST_RECEIVER_URL
set -euo pipefail
OUT=$1/fleet BENCH=$2 FAST=$3
rm -rf "$OUT" && mkdir -p "$OUT"
# A free port at most 55535: a cluster node also listens on its port + 10000 (the bus).
free_port() {
    python3 -c 'import socket
while True:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]
    if p <= 55535: print(p); break'
}
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$(cat "$p")" 2>/dev/null || true; done' EXIT
start_redis() { # port, extra arguments…
    local port=$1; shift
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$OUT" \
        --daemonize yes --pidfile "$OUT/redis-$port.pid" --logfile "$OUT/redis-$port.log" "$@"
    PIDS+=("$OUT/redis-$port.pid")
    for _ in $(seq 200); do redis-cli -p "$port" ping >/dev/null 2>&1 && return; sleep 0.05; done
    echo "redis-server on $port did not start: $(tail -n 1 "$OUT/redis-$port.log")" >&2
    exit 1
}
SINGLE=$(free_port); start_redis "$SINGLE"
NODES=()
for _ in 1 2 3; do
    port=$(free_port); start_redis "$port" --cluster-enabled yes --cluster-config-file "nodes-$port.conf"
    NODES+=("127.0.0.1:$port")
done
redis-cli --cluster create "${NODES[@]}" --cluster-replicas 0 --cluster-yes >/dev/null
until redis-cli -p "${NODES[0]#*:}" cluster info | grep -q cluster_state:ok; do sleep 0.1; done
SEEDS=$(printf 'redis://%s/,' "${NODES[@]}"); SEEDS=${SEEDS%,}

label() { sed "s/\"impl\": *\"rust\"/\"impl\":\"$1\"/"; }
for run in 1 2 3; do
    redis-cli -p "$SINGLE" flushall >/dev/null
    BENCH_OUTBOX_REDIS="redis://127.0.0.1:$SINGLE/" "$BENCH" throughput "$FAST" 100000 | label rust-redis-node
    for node in "${NODES[@]}"; do redis-cli -p "${node#*:}" flushall >/dev/null; done
    BENCH_OUTBOX_REDIS_CLUSTER="$SEEDS" "$BENCH" throughput "$FAST" 100000 | label rust-redis-cluster
done
"$BENCH" digest-hooks "redis://127.0.0.1:$SINGLE/"
