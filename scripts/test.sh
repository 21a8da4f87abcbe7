#!/usr/bin/env bash
# Runs every test: C++ unit tests (GoogleTest via ctest), pg_regress suites, integration tests.
# Installs what is missing first (scripts/setup.sh). Each suite starts and stops its own
# throwaway server as the unprivileged OS user "postgres".
#   scripts/test.sh            everything
#   scripts/test.sh unit|regress|integration   one layer
set -euo pipefail
cd "$(dirname "$0")/.."
# Servers run as the OS user postgres (initdb refuses root), which needs root to arrange.
[ "$(id -u)" -eq 0 ] || exec sudo -E bash "$0" "$@"
root=$PWD
export PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
layers=${1:-all}

[ -n "${SKIP_SETUP:-}" ] || scripts/setup.sh

run_unit() {
    echo "== unit tests (GoogleTest)"
    # Called in an || list, where set -e does not apply: every step checks its own status.
    cmake -S . -B build -DCMAKE_BUILD_TYPE=Debug >/dev/null || return 1
    cmake --build build -j2 >/dev/null || return 1
    ctest --test-dir build --output-on-failure || return 1
}

# installcheck_as_postgres KIND OUTDIR MAKE-ARGS: runs `make installcheck` (PGXS) for one kind of
# suite. --temp-instance runs initdb, which refuses root: run it as postgres in a copy of the
# tree that user can read. On failure prints the diffs (from OUTDIR, relative to the copy) and,
# with REGRESS_ACCEPT=1 (developers: review the diff!), copies the new outputs into expected/.
installcheck_as_postgres() {
    local kind=$1 outdir=$2 args=$3 work
    work=$(mktemp -d "/tmp/pg_sync_$kind.XXXXXX") || return 1
    cp -r Makefile pg_sync.control.in sql expected specs test "$work/" || return 1
    chown -R postgres "$work" || return 1
    if ! su postgres -s /bin/bash -c "make -s -C '$work' installcheck PG_CONFIG=$PG_CONFIG $args"; then
        head -n 300 "$work/$outdir/regression.diffs" 2>/dev/null
        if [ -n "${REGRESS_ACCEPT:-}" ]; then
            cp "$work/$outdir"/results/*.out expected/
            echo "accepted new outputs into expected/"
        fi
        echo "$kind diffs kept in $work"
        return 1
    fi
    rm -rf "$work"
}

run_regress() {
    echo "== regression tests (pg_regress)"
    # ISOLATION= : the isolation specs run in their own step (run_isolation).
    installcheck_as_postgres regress . "ISOLATION= ${REGRESS_ONLY:+REGRESS='$REGRESS_ONLY'}"
}

run_isolation() {
    echo "== concurrency tests (pg_isolation_regress)"
    # Specs in specs/NAME.spec, expected output in expected/NAME.out (ISOLATION in the Makefile);
    # PGXS writes their results and diffs to output_iso/. REGRESS= : only the isolation part.
    installcheck_as_postgres isolation output_iso "REGRESS= ${ISOLATION_ONLY:+ISOLATION='$ISOLATION_ONLY'}"
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

# (set -e does not apply inside && lists, so every layer's status is checked explicitly)
status=0
case $layers in
unit) run_unit || status=1 ;;
regress)
    run_regress || status=1
    run_isolation || status=1
    ;;
integration) run_integration || status=1 ;;
all)
    run_unit || status=1
    run_regress || status=1
    run_isolation || status=1
    run_integration || status=1
    ;;
*) echo "usage: $0 [unit|regress|integration]" >&2; exit 2 ;;
esac
if [ $status -ne 0 ]; then
    echo "== SOME TESTS FAILED"
    exit 1
fi
echo "== all requested tests passed"
