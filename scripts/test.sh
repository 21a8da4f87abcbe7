#!/usr/bin/env bash
# Runs every test: C++ unit tests (GoogleTest via ctest), pg_regress suites, integration tests.
# Installs what is missing first (scripts/setup.sh). Each suite starts and stops its own
# throwaway server as the unprivileged OS user "postgres".
#   scripts/test.sh            everything
#   scripts/test.sh unit|regress|integration   one layer
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
layers=${1:-all}

[ -n "${SKIP_SETUP:-}" ] || scripts/setup.sh

run_unit() {
    echo "== unit tests (GoogleTest)"
    cmake -S . -B build -DCMAKE_BUILD_TYPE=Debug >/dev/null
    cmake --build build -j2 >/dev/null
    ctest --test-dir build --output-on-failure
}

run_regress() {
    echo "== regression tests (pg_regress)"
    # pg_regress --temp-instance runs initdb, which refuses root: run it as postgres in a copy
    # of the tree that user can read.
    local work
    work=$(mktemp -d /tmp/pg_sync_regress.XXXXXX)
    cp -r Makefile pg_sync.control.in sql expected test "$work/"
    chown -R postgres "$work"
    local tests=""
    [ -n "${REGRESS_ONLY:-}" ] && tests="REGRESS='$REGRESS_ONLY'"
    if ! su postgres -s /bin/bash -c "make -s -C '$work' installcheck PG_CONFIG=$PG_CONFIG $tests"; then
        head -n 300 "$work/regression.diffs" 2>/dev/null
        # Developers: REGRESS_ACCEPT=1 copies the new outputs into expected/ (review the diff!).
        if [ -n "${REGRESS_ACCEPT:-}" ]; then
            cp "$work"/results/*.out expected/
            echo "accepted new outputs into expected/"
        fi
        echo "regression diffs kept in $work"
        return 1
    fi
    rm -rf "$work"
}

run_integration() {
    echo "== integration tests"
    local t failed=0
    for t in test/[0-9]*.sh; do
        echo "-- $t"
        if ! bash "$t"; then
            echo "FAILED: $t"
            failed=1
        fi
    done
    return $failed
}

case $layers in
unit) run_unit ;;
regress) run_regress ;;
integration) run_integration ;;
all) run_unit && run_regress && run_integration ;;
*) echo "usage: $0 [unit|regress|integration]" >&2; exit 2 ;;
esac
echo "== all requested tests passed"
