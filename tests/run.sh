#!/usr/bin/env bash
# The one test command: every suite of the project, installing what it needs first.
# Usage: bash tests/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# One target/ for cargo test, the C tests and the wheel build.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

step() { printf '\n== %s\n' "$*"; }

step "rust: format and lints"
cargo fmt --check
cargo clippy --all-targets -- -D warnings

step "rust: unit and integration tests"
cargo test
