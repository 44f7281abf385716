#!/usr/bin/env bash
# The test command for slipstream (CI runs it through .ci/run).
#
# For each of Python 3.11, 3.12 and 3.13: create (or reuse) a venv under .venvs/py3.X, install
# the project with its test extras, then run
#   - on 3.11 only: ruff check, mypy (strict, configured in pyproject.toml)
#   - on every Python: pytest, and the CPython test.test_asyncio conformance run (whole manifest).
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
    timeout --kill-after=30 "$STEP_TIMEOUT" "$@" 2>&1 | tee "$out" || true
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
# start_services: the place to start the servers that library tests need (PostgreSQL for
# asyncpg, Redis for redis-py, ...), and stop_services to stop them again on exit. Nothing
# needs them yet, so both are empty for now. CI starts on a fresh machine: start everything
# here, and install what is missing (see shared/README.md for the pg_ctl / redis-server recipes).
start_services() {
    :
}
stop_services() {
    :
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
    run_step "py$version: pytest" "$venv_python" -m pytest -q
    run_step "py$version: conformance" \
        "$venv_python" -m tests.conformance.run --loop slipstream --scope all
done

log "Summary"
printf '%s\n' "${SUMMARY[@]}"
echo
echo "steps: $PASSED of $((PASSED + FAILED)) passed"
# A failed step that ran no counted test (a lint error, a crash) still fails the run.
((FAILED == 0)) || ((TESTS_FAILED > 0)) || TESTS_FAILED=$FAILED
echo "total: $TESTS_PASSED passed, $TESTS_FAILED failed, $TESTS_SKIPPED skipped"
((FAILED == 0))
