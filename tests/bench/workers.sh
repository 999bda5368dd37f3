#!/usr/bin/env bash
# Disk outbox, many worker processes (run by tests/bench/run.sh, or alone): how fast one
# process commits to a directory alone, and how fast each of five commits when all five
# share one directory; plus the hook cost of two configs sharing a directory. Three
# interleaved runs each. Prints JSON lines.
# Usage: bash tests/bench/workers.sh HOOKS_BENCH_BINARY OUT_DIR
set -euo pipefail
BENCH=$1 OUT=$2
EVENTS=${WORKERS_BENCH_EVENTS:-50000}
# commit_runs LABEL [RATE]: one process alone, then five together, three times; each admits
# EVENTS as fast as it can, or RATE a second (a gateway worker's load, below saturation).
commit_runs() {
    local label=$1 rate=${2:-}
    for run in 1 2 3; do
        dir="$OUT/workers-$label-alone-$run" && rm -rf "$dir"
        echo go | "$BENCH" disk-commit "$dir" "$EVENTS" $rate | sed "s/\"bench\": *\"disk-commit\"/\"bench\":\"disk-commit\",\"impl\":\"alone\",\"load\":\"$label\"/"
        dir="$OUT/workers-$label-five-$run" && rm -rf "$dir" && mkdir -p "$dir"
        pids=() fifos=()
        for i in 1 2 3 4 5; do
            fifo="$OUT/workers-go-$run-$i" && rm -f "$fifo" && mkfifo "$fifo" && fifos+=("$fifo")
            "$BENCH" disk-commit "$dir" "$EVENTS" $rate < "$fifo" \
                | sed "s/\"bench\": *\"disk-commit\"/\"bench\":\"disk-commit\",\"impl\":\"five\",\"load\":\"$label\"/" &
            pids+=($!)
        done
        # A fifo per process, opened by the shell only now: all five start together.
        for fifo in "${fifos[@]}"; do echo go > "$fifo" & done
        wait "${pids[@]}"
        rm -f "${fifos[@]}"
    done
}
commit_runs flat
commit_runs paced 10000
"$BENCH" shared-hooks "$OUT/workers-shared"
# An idle replica on a Redis outbox (5 webhooks): the Redis commands it sends per second,
# counted by the server between 5 s and 25 s after it started (its start-up excluded).
if [[ -n "${BENCH_REDIS_URL:-}" ]]; then
    port=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.urlparse(sys.argv[1]).port)' "$BENCH_REDIS_URL")
    "$BENCH" idle "$BENCH_REDIS_URL" 5 30 &
    idle=$!
    sleep 5
    before=$(redis-cli -p "$port" info stats | sed -n 's/^total_commands_processed:\([0-9]*\).*/\1/p')
    sleep 20
    after=$(redis-cli -p "$port" info stats | sed -n 's/^total_commands_processed:\([0-9]*\).*/\1/p')
    wait "$idle"
    # Two INFO calls of ours are among them.
    echo "{\"bench\": \"idle-redis\", \"webhooks\": 5, \"seconds\": 20, \"commands\": $((after - before - 1))}"
fi
