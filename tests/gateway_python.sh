# Sourced by tests/run.sh and tests/bench/run.sh: sets GATEWAY_PYTHON to a Python >= 3.12
# (what mcp-contextforge-gateway 1.1.0 needs), or to "" when this machine has none.
GATEWAY_PYTHON=""
for candidate in python3.13 python3.12 "$HOME"/.pyenv/versions/3.1[2-9]*/bin/python3; do
    if command -v "$candidate" >/dev/null 2>&1 \
        && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
        GATEWAY_PYTHON=$(command -v "$candidate")
        break
    fi
done
