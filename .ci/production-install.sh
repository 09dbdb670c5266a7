#!/usr/bin/env bash
# CI job: install ONLY the README's production extras into a fresh virtualenv (no test
# dependencies, nothing from the main virtualenv) and run a real `celery worker` and
# flows on Redis + PostgreSQL and on RabbitMQ + PostgreSQL (.ci/production_smoke.py).
# A green test suite must not hide a missing install step (issue #12: kombu's Redis
# transport needs `packaging`, which only celery[redis] brings).
#
# Keep EXTRAS equal to the README's "Production" install line and docs/operations.md
# (tests/test_packaging.py::test_production_extras_agree_everywhere checks it).
#
# Prints "production-install: PASS" or "production-install: FAIL (...)"; exits non-zero
# on failure. Every step has a deadline; the whole job takes well under 3 minutes.
#
# Settings (environment):
#   PYTHON                          interpreter for the virtualenv (default: python3)
#   CELERYFLOW_CI_INSTALL_DEADLINE  seconds for venv + pip install (default 150)
#   CELERYFLOW_CI_SMOKE_DEADLINE    seconds for the worker/flow runs (default 120)
#   CELERYFLOW_CI_KEEP_VENV         set to keep the virtualenv (its path is printed)
set -euo pipefail

EXTRAS="redis,postgres"

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
PYTHON="${PYTHON:-python3}"
INSTALL_DEADLINE="${CELERYFLOW_CI_INSTALL_DEADLINE:-150}"
SMOKE_DEADLINE="${CELERYFLOW_CI_SMOKE_DEADLINE:-120}"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/celeryflow-production-install.XXXXXX")
PIDFILE="$WORK/worker.pids"
cleanup() {
    # The smoke run stops its workers itself; should it have been killed, stop whatever
    # worker it listed, by PID (each worker leads its own process group: its pool too).
    if [ -f "$PIDFILE" ]; then
        while read -r pid; do
            [ -n "$pid" ] && kill -KILL -- "-$pid" 2>/dev/null || true
        done <"$PIDFILE"
    fi
    if [ -n "${CELERYFLOW_CI_KEEP_VENV:-}" ]; then
        echo "production-install: kept $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

fail() {
    echo "production-install: FAIL ($*)" >&2
    exit 1
}

started=$SECONDS
# The caller's environment must not leak in: not its virtualenv, not the sources.
unset VIRTUALENV PYTHONPATH PYTHONHOME VIRTUAL_ENV
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

echo "production-install: fresh virtualenv in $WORK/venv; pip install '.[$EXTRAS]'"
timeout "$INSTALL_DEADLINE" "$PYTHON" -m venv "$WORK/venv" || fail "cannot create a virtualenv"
# A copy of the tree (no .venv, no build leftovers) so the install cannot pick up
# anything that `pip install` from a fresh clone would not see.
mkdir "$WORK/src"
if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    (cd "$ROOT" && git ls-files -z --cached --others --exclude-standard \
        | while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done \
        | xargs -0 cp --parents -t "$WORK/src") || fail "cannot copy the source tree"
else
    tar -C "$ROOT" --exclude=./.venv --exclude=./.git --exclude='*.egg-info' --exclude=./build \
        -cf - . | tar -C "$WORK/src" -xf - || fail "cannot copy the source tree"
fi
remaining=$(( INSTALL_DEADLINE - (SECONDS - started) ))
[ "$remaining" -gt 0 ] || fail "install deadline passed"
timeout "$remaining" "$WORK/venv/bin/python" -m pip install --quiet "$WORK/src[$EXTRAS]" \
    || fail "pip install '.[$EXTRAS]' failed or took over ${INSTALL_DEADLINE}s"
"$WORK/venv/bin/python" -m pip check || fail "pip check: broken requirements"
echo "production-install: installed in $(( SECONDS - started ))s"

# No test dependency may be present: they could hide a missing production one.
for module in pytest yaml flower flask django; do
    if "$WORK/venv/bin/python" -c "import $module" 2>/dev/null; then
        fail "$module is importable in the production virtualenv"
    fi
done

set +e
CELERYFLOW_CI_PIDFILE="$PIDFILE" timeout --kill-after=15 "$SMOKE_DEADLINE" \
    "$WORK/venv/bin/python" "$ROOT/.ci/production_smoke.py"
rc=$?
set -e
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    fail "the worker/flow runs took over ${SMOKE_DEADLINE}s"
fi
[ "$rc" -eq 0 ] || fail "worker/flow runs failed (exit $rc): see above"
echo "production-install: PASS in $(( SECONDS - started ))s"
