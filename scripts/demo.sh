#!/usr/bin/env bash
# The demo command: installs slipstream with its demo extra (uvloop and rloop, the loops it is
# compared with; matplotlib; uvicorn, aiohttp, httpx and asyncpg, which the examples and the web
# rows use) into .venvs/demo, then runs `python -m slipstream demo`: every example (each under a
# deadline, servers started, asked and stopped) and a short side-by-side benchmark.
#
# Environment:
#   SLIPSTREAM_DEMO_PYTHON   Python version for the demo venv (default 3.12)
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
VERSION=${SLIPSTREAM_DEMO_PYTHON:-3.12}
VENV="$ROOT/.venvs/demo"

log() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
warn() { printf '\033[33mWARNING: %s\033[0m\n' "$*" >&2; }

find_python() {
    local pyenv_root candidate
    pyenv_root=$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
    candidate=$(find "$pyenv_root/versions" -maxdepth 1 -regex ".*/${VERSION//./\\.}\.[0-9]+" \
        -printf '%f\n' 2>/dev/null | sort -V | tail -n 1)
    if [[ -n $candidate && -x $pyenv_root/versions/$candidate/bin/python ]]; then
        echo "$pyenv_root/versions/$candidate/bin/python"
    elif candidate=$(command -v "python$VERSION") && "$candidate" -c '' 2>/dev/null; then
        echo "$candidate"
    elif candidate=$(command -v python3) && "$candidate" -c 'import sys; assert sys.version_info >= (3, 11)'; then
        warn "Python $VERSION not found; using $candidate"
        echo "$candidate"
    else
        echo "ERROR: no Python >= 3.11 found" >&2
        return 1
    fi
}

if [[ -x $VENV/bin/python ]] && "$VENV/bin/python" -c '' 2>/dev/null; then
    log "reusing $VENV"
else
    python=$(find_python) || exit 1
    log "creating $VENV with $python"
    rm -rf "$VENV"
    "$python" -m venv "$VENV" || exit 1
fi
PY="$VENV/bin/python"

log "installing slipstream with the demo extra"
if ! "$PY" -m pip install --quiet -e ".[demo]"; then
    # One of the peers may have no wheel for this Python: install what installs, warn about the rest.
    warn "installing .[demo] failed; installing its parts one by one"
    "$PY" -m pip install --quiet -e . || exit 1
    for package in uvloop rloop matplotlib uvicorn httptools aiohttp httpx asyncpg; do
        "$PY" -m pip install --quiet "$package" || warn "$package did not install: the demo runs without it"
    done
fi

log "python -m slipstream demo $*"
exec "$PY" -m slipstream demo "$@"
