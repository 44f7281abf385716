#!/usr/bin/env bash
# The test command for slipstream (CI runs it through .ci/run).
#
# For each of Python 3.11, 3.12 and 3.13: create (or reuse) a venv under .venvs/py3.X, install
# the project with its test extras, then run
#   - on 3.11 only: ruff check, mypy (strict, configured in pyproject.toml)
#   - on every Python: pytest, and the CPython test.test_asyncio conformance run (whole manifest),
#     each twice: on the compiled core that pip built (the default) and on the pure-Python core
#     (SLIPSTREAM_PURE=1); without a C compiler, on the pure-Python core only. pytest includes
#     the short form of the stress suite (tests/stress; the full form: python -m tests.stress --full)
#   - on 3.11 only: pytest once more with PYTHONASYNCIODEBUG=1
# Every step runs even when an earlier one failed; a summary is printed at the end and the
# script exits non-zero if anything failed.
#
# Environment:
#   SLIPSTREAM_PYTHONS   space-separated versions to test (default "3.11 3.12 3.13")
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
read -r -a PYTHONS <<<"${SLIPSTREAM_PYTHONS:-3.11 3.12 3.13}"
LINT_PYTHON=3.11

STEP_TIMEOUT=1800 # seconds; a safety net so a hung step cannot eat CI's 90 minutes
SUMMARY=()
PASSED=0
FAILED=0

log() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

record() { # record STATUS NAME DETAIL
    SUMMARY+=("$(printf '%-4s  %-34s %s' "$1" "$2" "$3")")
    if [[ $1 == PASS ]]; then PASSED=$((PASSED + 1)); else FAILED=$((FAILED + 1)); fi
}

TESTS_PASSED=0
TESTS_FAILED=0
TESTS_SKIPPED=0

# count_tests LOGFILE : add the counts of a pytest summary ("12 passed, 1 skipped in 3.2s") or of
# the conformance runner's closing line ("conformance: 690 passed, 0 failed, 1 skipped") to the
# totals, so the script's last line reports tests, not steps.
count_tests() {
    local line n
    line=$(grep -E '^(conformance: )?[0-9]+ (passed|failed)|^=+ .*[0-9]+ (passed|failed)' "$1" | tail -n 1)
    [[ -n $line ]] || return 0
    n=$(grep -oE '[0-9]+ passed' <<<"$line" | grep -oE '[0-9]+') && TESTS_PASSED=$((TESTS_PASSED + n))
    for n in $(grep -oE '[0-9]+ (failed|errors?)' <<<"$line" | grep -oE '^[0-9]+'); do
        TESTS_FAILED=$((TESTS_FAILED + n))
    done
    n=$(grep -oE '[0-9]+ skipped' <<<"$line" | grep -oE '[0-9]+') && TESTS_SKIPPED=$((TESTS_SKIPPED + n))
    return 0
}

# run_step NAME COMMAND... : run one step under a timeout and record its outcome.
run_step() {
    local name=$1
    shift
    log "$name: $*"
    local started=$SECONDS rc=0 out
    out=$(mktemp)
    timeout --kill-after=30 "$STEP_TIMEOUT" "$@" 2>&1 | tee "$out"
    rc=${PIPESTATUS[0]}
    count_tests "$out"
    rm -f "$out"
    local took="$((SECONDS - started))s"
    if ((rc == 0)); then
        record PASS "$name" "$took"
    elif ((rc == 124)); then
        record FAIL "$name" "timed out after ${STEP_TIMEOUT}s"
    elif ((rc == 5)) && [[ $name == *pytest* ]]; then
        # The suite always has tests: pytest's "no tests collected" is a failure, not a pass.
        record FAIL "$name" "exit 5: pytest collected no tests"
    else
        record FAIL "$name" "exit $rc, $took"
    fi
}

# find_python 3.X : print the path of a Python 3.X interpreter (pyenv first, then PATH).
find_python() {
    local version=$1 pyenv_root candidate
    pyenv_root=$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
    # Highest installed patch release; skips variants such as 3.13.0t (free-threaded).
    candidate=$(find "$pyenv_root/versions" -maxdepth 1 -regex ".*/${version//./\\.}\.[0-9]+" \
        -printf '%f\n' 2>/dev/null | sort -V | tail -n 1)
    if [[ -n $candidate && -x $pyenv_root/versions/$candidate/bin/python ]]; then
        echo "$pyenv_root/versions/$candidate/bin/python"
        return 0
    fi
    # A pyenv shim for a version that is not selected exists on PATH but fails when run: check.
    if candidate=$(command -v "python$version") && "$candidate" -c '' 2>/dev/null; then
        echo "$candidate"
        return 0
    fi
    return 1
}

# setup_venv 3.X : create or reuse .venvs/py3.X and install the project with its test extras.
setup_venv() {
    local version=$1 venv="$ROOT/.venvs/py$1" python
    if ! python=$(find_python "$version"); then
        echo "ERROR: Python $version not found (looked in pyenv's versions and for python$version on PATH)" >&2
        return 1
    fi
    if [[ ! -x $venv/bin/python ]] || ! "$venv/bin/python" -c '' 2>/dev/null; then
        echo "creating $venv with $python"
        rm -rf "$venv"
        "$python" -m venv "$venv" || return 1
    else
        echo "reusing $venv"
    fi
    "$venv/bin/python" -m pip install --quiet -e ".[test]" &&
        "$venv/bin/python" -m pip list --format=freeze 2>/dev/null |
        grep -iE '^(pytest|pytest-timeout|mypy|ruff|aiohttp)==' | paste -sd' ' -
}

# --- services --------------------------------------------------------------------------------
# start_services starts the servers that tests/libraries talks to, on loopback and free ports,
# and exports where they are; stop_services (the EXIT trap) stops what it started and removes
# its files. CI starts on a fresh machine, so what is missing is installed here. A server that
# cannot start leaves its reason in SLIPSTREAM_TEST_PG_ERROR / SLIPSTREAM_TEST_REDIS_ERROR: its
# tests then fail in CI (CI=true) and skip elsewhere (tests/libraries/conftest.py).
#   SLIPSTREAM_TEST_PG_DSN          PostgreSQL 15 without TLS (asyncpg's "prefer" falls back)
#   SLIPSTREAM_TEST_PG_TLS_DSN      a second postmaster on a copy of the cluster, with TLS on
#   SLIPSTREAM_TEST_PG_TLS_CA       its certificate (self-signed, made here)
#   SLIPSTREAM_TEST_REDIS_URL       redis-server over TCP
#   SLIPSTREAM_TEST_REDIS_UNIX_URL  the same redis-server over its Unix socket
SERVICES_DIR=""
SERVICES_PYTHON=""
PG_BIN=/usr/lib/postgresql/15/bin
PG_CLUSTERS=()
REDIS_PIDFILE=""

# apt_install PACKAGE : install a Debian package quietly (CI runs as root).
apt_install() {
    ((EUID == 0)) || return 1
    echo "installing $1 with apt-get"
    apt-get update -qq >/dev/null 2>&1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$1" \
        >"$SERVICES_DIR/apt-$1.log" 2>&1 || { tail -n 5 "$SERVICES_DIR/apt-$1.log"; return 1; }
}

# free_ports N : N distinct free TCP ports on 127.0.0.1, one a line.
free_ports() {
    "$SERVICES_PYTHON" -c 'import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print("\n".join(str(s.getsockname()[1]) for s in socks))' "$1"
}

# as_postgres COMMAND... : PostgreSQL's server refuses to run as root.
as_postgres() {
    if ((EUID == 0)); then runuser -u postgres -- "$@"; else "$@"; fi
}

# start_postgres : one initdb, copied so that a second postmaster can run with TLS on (a
# server-wide setting; asyncpg takes another path with it: SSLRequest, start_tls).
start_postgres() {
    local dir=$SERVICES_DIR/pg port tls_port opts
    if [[ ! -x $PG_BIN/initdb ]] && ! apt_install postgresql-15; then
        echo "no $PG_BIN/initdb, and installing postgresql-15 failed"
        return 1
    fi
    mkdir -m 700 "$dir" && if ((EUID == 0)); then chown postgres: "$dir"; fi || return 1
    if ! as_postgres "$PG_BIN/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 \
        --no-locale >"$dir/initdb.log" 2>&1; then
        echo "initdb failed: $(tail -n 1 "$dir/initdb.log")"
        return 1
    fi
    as_postgres openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
        -keyout "$dir/server.key" -out "$dir/server.crt" >/dev/null 2>&1 &&
        chmod 600 "$dir/server.key" && as_postgres cp -a "$dir/data" "$dir/data-tls" ||
        { echo "could not make the TLS certificate or the second cluster"; return 1; }
    { read -r port && read -r tls_port; } < <(free_ports 2) ||
        { echo "could not pick free ports (with ${SERVICES_PYTHON:-no Python})"; return 1; }
    opts="-c listen_addresses=127.0.0.1 -k $dir -c fsync=off -c shared_buffers=32MB"
    PG_CLUSTERS=("$dir/data")
    as_postgres "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/log" -w -o "$opts -p $port" start \
        >/dev/null 2>&1 || { echo "postgres did not start: $(tail -n 1 "$dir/log")"; return 1; }
    PG_CLUSTERS+=("$dir/data-tls")
    opts+=" -c ssl=on -c ssl_cert_file=$dir/server.crt -c ssl_key_file=$dir/server.key"
    if ! as_postgres "$PG_BIN/pg_ctl" -D "$dir/data-tls" -l "$dir/log-tls" -w \
        -o "$opts -p $tls_port" start >/dev/null 2>&1; then
        echo "postgres (TLS) did not start: $(tail -n 1 "$dir/log-tls")"
        return 1
    fi
    export SLIPSTREAM_TEST_PG_DSN="postgresql://postgres@127.0.0.1:$port/postgres"
    export SLIPSTREAM_TEST_PG_TLS_DSN="postgresql://postgres@127.0.0.1:$tls_port/postgres"
    export SLIPSTREAM_TEST_PG_TLS_CA="$dir/server.crt"
    echo "$("$PG_BIN/postgres" -V) on 127.0.0.1:$port, and with TLS on :$tls_port"
}

start_redis() {
    local port tries
    if ! command -v redis-server >/dev/null && ! apt_install redis-server; then
        echo "redis-server is not installed, and installing it failed"
        return 1
    fi
    port=$(free_ports 1) ||
        { echo "could not pick a free port (with ${SERVICES_PYTHON:-no Python})"; return 1; }
    REDIS_PIDFILE=$SERVICES_DIR/redis.pid
    redis-server --bind 127.0.0.1 --port "$port" --unixsocket "$SERVICES_DIR/redis.sock" \
        --unixsocketperm 700 --save '' --appendonly no --dir "$SERVICES_DIR" \
        --logfile "$SERVICES_DIR/redis.log" --daemonize yes --pidfile "$REDIS_PIDFILE" ||
        { echo "redis-server did not start"; return 1; }
    for ((tries = 0; tries < 50; tries++)); do
        if [[ $(redis-cli -p "$port" ping 2>/dev/null) == PONG ]]; then
            export SLIPSTREAM_TEST_REDIS_URL="redis://127.0.0.1:$port/0"
            export SLIPSTREAM_TEST_REDIS_UNIX_URL="unix://$SERVICES_DIR/redis.sock?db=0"
            echo "$(redis-server --version | cut -d ' ' -f 1-3) on 127.0.0.1:$port"
            return 0
        fi
        sleep 0.1
    done
    echo "redis-server does not answer PING: $(tail -n 1 "$SERVICES_DIR/redis.log" 2>/dev/null)"
    return 1
}

start_services() {
    log "Starting the services for tests/libraries"
    SERVICES_PYTHON=$(find_python "${PYTHONS[0]}" || command -v python3)
    SERVICES_DIR=$(mktemp -d /tmp/slipstream-services.XXXXXX) && chmod 755 "$SERVICES_DIR" ||
        return 0
    if ! start_postgres >"$SERVICES_DIR/pg.out" 2>&1; then
        export SLIPSTREAM_TEST_PG_ERROR="$(tail -n 1 "$SERVICES_DIR/pg.out")"
        echo "PostgreSQL FAILED:"
    fi
    cat "$SERVICES_DIR/pg.out"
    if ! start_redis >"$SERVICES_DIR/redis.out" 2>&1; then
        export SLIPSTREAM_TEST_REDIS_ERROR="$(tail -n 1 "$SERVICES_DIR/redis.out")"
        echo "Redis FAILED:"
    fi
    cat "$SERVICES_DIR/redis.out"
}

stop_services() {
    local cluster pid tries
    for cluster in "${PG_CLUSTERS[@]}"; do
        as_postgres "$PG_BIN/pg_ctl" -D "$cluster" -m fast -w stop >/dev/null 2>&1
    done
    if [[ -n $REDIS_PIDFILE && -s $REDIS_PIDFILE ]] && pid=$(<"$REDIS_PIDFILE") &&
        kill "$pid" 2>/dev/null; then
        for ((tries = 0; tries < 50; tries++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
    [[ -z $SERVICES_DIR ]] || rm -rf "$SERVICES_DIR"
}

trap stop_services EXIT
start_services

for version in "${PYTHONS[@]}"; do
    venv_python="$ROOT/.venvs/py$version/bin/python"
    log "Python $version: setting up .venvs/py$version"
    if ! setup_venv "$version"; then
        record FAIL "py$version: venv + pip install" "see the log above"
        continue
    fi
    record PASS "py$version: venv + pip install" "$("$venv_python" -c 'import platform; print(platform.python_version())')"

    if [[ $version == "$LINT_PYTHON" ]]; then
        run_step "py$version: ruff check" "$venv_python" -m ruff check .
        run_step "py$version: mypy --strict" "$venv_python" -m mypy
    fi
    # The suite runs on each build of the core: compiled (what pip built, the default) and
    # pure Python (SLIPSTREAM_PURE=1, the same package as installed without a C compiler).
    if env -u SLIPSTREAM_PURE "$venv_python" -c 'import slipstream, sys; sys.exit(not slipstream.compiled)'; then
        builds=(compiled pure)
    elif command -v "${CC:-cc}" >/dev/null; then
        record FAIL "py$version: compiled core" "not built although a C compiler exists (see pip's output)"
        builds=(pure)
    else
        echo "no C compiler: testing the pure-Python core only"
        builds=(pure)
    fi
    for build in "${builds[@]}"; do
        if [[ $build == compiled ]]; then build_env=(env -u SLIPSTREAM_PURE); else build_env=(env SLIPSTREAM_PURE=1); fi
        run_step "py$version: pytest ($build)" "${build_env[@]}" "$venv_python" -m pytest -q
        run_step "py$version: conformance ($build)" \
            "${build_env[@]}" "$venv_python" -m tests.conformance.run --loop slipstream --scope all
    done
    if [[ $version == "$LINT_PYTHON" ]]; then
        # Once, in asyncio's debug mode (slow-callback and never-awaited checks, non-blocking
        # socket checks), on the default build: the whole suite must pass there too.
        run_step "py$version: pytest (PYTHONASYNCIODEBUG=1)" \
            env PYTHONASYNCIODEBUG=1 "$venv_python" -m pytest -q
    fi
done

log "Summary"
printf '%s\n' "${SUMMARY[@]}"
echo
echo "steps: $PASSED of $((PASSED + FAILED)) passed"
# A failed step that ran no counted test (a lint error, a crash) still fails the run.
((FAILED == 0)) || ((TESTS_FAILED > 0)) || TESTS_FAILED=$FAILED
echo "total: $TESTS_PASSED passed, $TESTS_FAILED failed, $TESTS_SKIPPED skipped"
((FAILED == 0))
