#!/usr/bin/env bash
# Runs every test: C++ unit tests (GoogleTest via ctest) and the release metadata check,
# pg_regress suites, integration tests, fuzzing of src/core (bounded in time), the extension under
# ASan/UBSan in real servers, and the Debian package (built, installed, installcheck, removed).
# Installs what is missing first (scripts/setup.sh). Each suite starts and stops its own
# throwaway server as the unprivileged OS user "postgres".
#   scripts/test.sh            everything (what CI runs: .ci/run)
#   scripts/test.sh unit|regress|integration|fuzz|sanitize|package   one layer
#   INTEGRATION_ONLY="070 110"   integration: only these test/NNN_*.sh
#   FUZZ_SECONDS=15              fuzz: seconds per libFuzzer target (scripts/fuzz.sh)
#   SANITIZE_TESTS="070 080 110 160" | all   sanitize: integration tests (scripts/sanitize.sh)
#   REGRESS_BINDIR=DIR           regress: PostgreSQL binaries for the temporary instance
#   INSTALLCHECK_TARGET=installcheck   regress: against the server of PGHOST/PGPORT/PGUSER instead
#                                of temporary instances (README, "Against an existing server")
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/platform.sh && require_platform
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

# installcheck_as_postgres KIND OUTDIR MAKE-ARGS: runs `make check-temp` (PGXS installcheck in a
# temporary instance, see the Makefile) for one kind of suite, or with INSTALLCHECK_TARGET=
# installcheck against the server of PGHOST/PGPORT (scripts/package_check.sh). --temp-instance
# runs initdb, which refuses root: run it as postgres in a copy of the tree that user can read
# (the Makefile and test/: test/sql, test/specs, test/expected; no sources, so nothing is built
# there). On failure prints the diffs (from OUTDIR, relative to the copy) and, with
# REGRESS_ACCEPT=1 (developers: review the diff!), copies the new outputs into test/expected/.
installcheck_as_postgres() {
    local kind=$1 outdir=$2 args=$3 work rc=0
    work=$(mktemp -d "/tmp/pg_sync_$kind.XXXXXX") || return 1
    cp -r Makefile pg_sync.control.in test "$work/" || return 1
    chown -R postgres "$work" || return 1
    su postgres -s /bin/bash -c "make -s -C '$work' ${INSTALLCHECK_TARGET:-check-temp} PG_CONFIG=$PG_CONFIG \
        ${REGRESS_BINDIR:+bindir='$REGRESS_BINDIR'} $args" || rc=1
    # The suites test an installed pg_sync: make must not have built any of it here (there are
    # no sources to build the library from; the control file and SQL scripts would appear here).
    if [ -n "$(find "$work" -maxdepth 1 \( -name '*.so' -o -name pg_sync.control -o -name sql \) -print -quit)" ]; then
        echo "$kind: make built files in $work (the suites must use the installed pg_sync)"
        rc=1
    fi
    # PG_SAVE_LOGS (test/lib/pg.sh): keep the temporary instance's server log.
    if [ -n "${PG_SAVE_LOGS:-}" ]; then
        cp "$work/$outdir/log/postmaster.log" "$PG_SAVE_LOGS/$kind.postmaster.log" 2>/dev/null || true
    fi
    if [ $rc -ne 0 ]; then
        head -n 300 "$work/$outdir/regression.diffs" 2>/dev/null
        if [ -n "${REGRESS_ACCEPT:-}" ]; then
            cp "$work/$outdir"/results/*.out test/expected/
            echo "accepted new outputs into test/expected/"
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
    # Specs in test/specs/NAME.spec, expected output in test/expected/NAME.out (ISOLATION in the Makefile);
    # PGXS writes their results and diffs to output_iso/. REGRESS= : only the isolation part.
    installcheck_as_postgres isolation output_iso "REGRESS= ${ISOLATION_ONLY:+ISOLATION='$ISOLATION_ONLY'}"
}

run_integration() {
    echo "== integration tests"
    local t failed=0
    for t in test/[0-9]*.sh; do
        if [ -n "${INTEGRATION_ONLY:-}" ] && [[ " $INTEGRATION_ONLY " != *" $(basename "$t" | cut -d_ -f1) "* ]]; then
            continue
        fi
        echo "-- $t"
        if ! bash "$t"; then
            echo "FAILED: $t"
            failed=1
        fi
    done
    return $failed
}

run_fuzz() {
    echo "== fuzzing (libFuzzer, ASan/UBSan; ${FUZZ_SECONDS:-15}s per target)"
    local build rc=0
    build=$(mktemp -d /tmp/pg_sync_fuzz.XXXXXX) || return 1
    FUZZ_SECONDS=${FUZZ_SECONDS:-15} FUZZ_BUILD_DIR=$build bash scripts/fuzz.sh || rc=1
    # Keep the reproducers and logs of a failure; otherwise the build is 100 MB of objects.
    if [ $rc -eq 0 ]; then rm -rf "$build"; else echo "fuzz build, reproducers and logs kept in $build"; fi
    return $rc
}

run_sanitize() {
    echo "== the extension under AddressSanitizer and UBSan"
    SKIP_SETUP=1 bash scripts/sanitize.sh
}

# Last in a full run: it installs the package into the system directories and removes it again
# (putting back setup.sh's install), so no other layer can see it even if that went wrong.
run_package() {
    echo "== the Debian package (build, install, installcheck against it, remove)"
    bash scripts/package_check.sh
}

# timed NAME FUNCTION: runs one layer and records how long it took.
timings=()
timed() {
    local t0=$SECONDS rc=0
    "$2" || rc=1
    timings+=("$(printf '%-12s %4ss%s' "$1" $((SECONDS - t0)) "$([ $rc -eq 0 ] || echo '  FAILED')")")
    return $rc
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
fuzz) run_fuzz || status=1 ;;
sanitize) run_sanitize || status=1 ;;
package) run_package || status=1 ;;
all)
    timed unit run_unit || status=1
    timed regress run_regress || status=1
    timed isolation run_isolation || status=1
    timed integration run_integration || status=1
    timed fuzz run_fuzz || status=1
    timed sanitize run_sanitize || status=1
    timed package run_package || status=1
    echo "== time per layer"
    printf '  %s\n' "${timings[@]}"
    ;;
*) echo "usage: $0 [unit|regress|integration|fuzz|sanitize|package]" >&2; exit 2 ;;
esac
if [ $status -ne 0 ]; then
    echo "== SOME TESTS FAILED"
    exit 1
fi
echo "== all requested tests passed"
