#!/usr/bin/env bash
# Runs the extension built with AddressSanitizer and UBSan inside real servers: the pg_regress
# and isolation suites and a set of integration tests, then fails on any sanitizer report (report
# files, or "AddressSanitizer" / "runtime error:" in a server log) as well as on failing tests.
#
#   scripts/sanitize.sh                          pg_regress + isolation + test/{070,080,110,160}
#   SANITIZE_TESTS=all scripts/sanitize.sh       every integration test (about 9 minutes; test/150's
#                                                worker memory bound fails under ASan, see below)
#   SANITIZE_TESTS="090 100" scripts/sanitize.sh some of them ("" for none)
#   SANITIZE_REGRESS=0 scripts/sanitize.sh       without pg_regress and the isolation specs
#   SANITIZE_KEEP=1                              keep the work directory (printed) even on success
#
# It never touches the shared installation that other servers on the machine use: the sanitized
# build is made in a copy of the tree and installed with DESTDIR into a private directory, which
# then becomes a relocated copy of PostgreSQL 15 (PostgreSQL finds lib/ and share/ relative to its
# binary): bin/ copied, lib/ and share/ symlinks to the real files, except pg_sync's own. Its
# bin/postgres is a wrapper that starts the real binary with libasan preloaded (the executable is
# not instrumented, so the ASan runtime must come first) and test/lib/asan_first.so (see there).
# Tests then run with PG_BIN pointing at that bin/ (test/lib/pg.sh) or bindir= (pg_regress).
#
# ASan: detect_leaks=0 (PostgreSQL does not free at exit), abort_on_error=1, reports to files
# (reports/asan.PID). UBSan: -fno-sanitize-recover=all, so the first report ends the process;
# print_stacktrace=1; reports go to the server log (test/lib/asan_first.c says why), which
# test/lib/pg.sh's pg_stop and scripts/test.sh save into logs/ (PG_SAVE_LOGS) for the scan.
# PostgreSQL's -fwrapv makes signed overflow defined behaviour: UBSan does not flag it.
# Only pg_sync's code is instrumented; ASan's allocator and interceptors still cover the whole
# server (heap overflows into malloc'd blocks, use after free, double free, SEGV anywhere).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || exec sudo -E bash "$0" "$@"
export PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
[ -n "${SKIP_SETUP:-}" ] || scripts/setup.sh
start=$SECONDS

tests=${SANITIZE_TESTS-070 080 110 160}
if [ "$tests" = all ]; then
    tests=""
    for t in test/[0-9]*.sh; do tests+="$(basename "$t" | cut -d_ -f1) "; done
fi

dir=$(mktemp -d /tmp/pg_sync_sanitize.XXXXXX)
chmod 755 "$dir"
stage=$dir/stage
real_bin=$($PG_CONFIG --bindir)
real_lib=$($PG_CONFIG --pkglibdir)
real_share=$($PG_CONFIG --sharedir)
bin=$stage$real_bin

# --- Build (in a copy: the tree's own objects and pg_sync.so stay the normal build) -------------
echo "sanitize: building pg_sync with -fsanitize=address,undefined in $dir/build"
mkdir "$dir/build"
cp -r Makefile pg_sync.control.in sql src "$dir/build/"
find "$dir/build/src" \( -name '*.o' -o -name '*.bc' -o -name '*.so' \) -delete
# The SQL scripts are generated from sql/src/ and sql/updates/: make them again from the copy.
rm -f "$dir/build/sql"/pg_sync--*.sql
# with_llvm=no: no JIT bitcode (the normal install's is not used by these tests either).
make -s -C "$dir/build" -j"$(nproc)" WERROR=1 SANITIZE=1 with_llvm=no PG_CONFIG=$PG_CONFIG >/dev/null
make -s -C "$dir/build" install DESTDIR="$stage" with_llvm=no PG_CONFIG=$PG_CONFIG >/dev/null
ldd "$stage$real_lib/pg_sync.so" | grep libasan >/dev/null || { echo "sanitize: pg_sync.so is not linked with libasan"; exit 1; }
echo "sanitize: built in $((SECONDS - start))s"

# --- The relocated installation -------------------------------------------------------------------
mkdir -p "$bin"
cp -a "$real_bin/." "$bin/" # real copies: postgres resolves symlinks to find its own directory
# Everything else of lib/ and share/ as symlinks; -n keeps the sanitized pg_sync files installed above.
cp -rsn "$real_lib/." "$stage$real_lib/"
cp -rsn "$real_share/." "$stage$real_share/"
# No SQL script of pg_sync from the shared installation: only this build's (the update scripts
# differ between versions; a stale one could offer an update path this build does not have).
find "$stage$real_share/extension" -maxdepth 1 -name 'pg_sync*' -type l -delete
# Nor its JIT bitcode (this build has none, with_llvm=no): the system's, of another build, or
# none at all while scripts/package_check.sh swaps the system's files, must not be inlined.
rm -rf "$stage$real_lib/bitcode/pg_sync" "$stage$real_lib/bitcode/pg_sync.index.bc"
[ "$("$bin/pg_config" --pkglibdir)" = "$stage$real_lib" ] ||
    { echo "sanitize: PostgreSQL is not relocatable here ($bin/pg_config --pkglibdir)"; exit 1; }

libasan=$(readlink -f "$(g++ -print-file-name=libasan.so)")
reports=$dir/reports
logs=$dir/logs
gcc -shared -fPIC -O2 -Wall -Werror -DUBSAN_OPTIONS_DEFAULT='"print_stacktrace=1:halt_on_error=1"' \
    -o "$dir/asan_first.so" test/lib/asan_first.c
mkdir -p "$reports" "$logs"
chown postgres "$reports"
mv "$bin/postgres" "$bin/postgres.bin"
cat >"$bin/postgres" <<EOF
#!/bin/bash
# pg_sync built with ASan/UBSan (scripts/sanitize.sh): the ASan runtime must be loaded first.
export LD_PRELOAD=$libasan:$dir/asan_first.so
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:quarantine_size_mb=64:log_path=$reports/asan
# (UBSan's options are compiled into asan_first.so: see there.)
# argv[0] stays .../bin/postgres: PostgreSQL finds lib/ and share/ from it.
exec -a "\$0" "$bin/postgres.bin" "\$@"
EOF
chmod 755 "$bin/postgres"

# --- Is it really the sanitized library that runs? ------------------------------------------------
. test/lib/pg.sh
(
    PG_BIN=$bin
    pg_start sanitize_check
    trap pg_stop EXIT
    q -c "CREATE EXTENSION pg_sync" >/dev/null
    # shared_preload_libraries: the postmaster itself has the library loaded.
    grep -q " $stage$real_lib/pg_sync.so\$" "/proc/$PG_PID/maps" ||
        { echo "sanitize: the server did not load $stage$real_lib/pg_sync.so"; exit 1; }
    grep -q " $libasan\$" "/proc/$PG_PID/maps" || { echo "sanitize: no ASan runtime in the server"; exit 1; }
)
echo "sanitize: the server loads $stage$real_lib/pg_sync.so with the ASan runtime"

# --- Tests ----------------------------------------------------------------------------------------
status=0
# PG_SYNC_SANITIZED=1 lets a test skip what ASan makes meaningless: memory bounds (its quarantine
# keeps up to quarantine_size_mb of freed memory per process, and shadow memory comes on top).
export PG_BIN=$bin PG_SAVE_LOGS=$logs SKIP_SETUP=1 PG_SYNC_SANITIZED=1
if [ "${SANITIZE_REGRESS:-1}" != 0 ]; then
    t0=$SECONDS
    REGRESS_BINDIR=$bin bash scripts/test.sh regress || status=1
    echo "sanitize: pg_regress and isolation took $((SECONDS - t0))s"
fi
if [ -n "${tests// /}" ]; then
    t0=$SECONDS
    INTEGRATION_ONLY=$tests bash scripts/test.sh integration || status=1
    echo "sanitize: integration tests ($tests) took $((SECONDS - t0))s"
fi

# --- Reports --------------------------------------------------------------------------------------
# ASan writes reports/asan.PID (one per process that hit one); UBSan writes to the server's stderr,
# which is its log. The first report in full, then one line each.
found=0 n=0
for f in "$reports"/*; do
    [ -e "$f" ] || continue
    [ $found -eq 1 ] || { echo "=== first sanitizer report ($f)"; head -n 45 "$f"; echo "==="; }
    found=1 n=$((n + 1))
    [ $n -gt 5 ] || echo "sanitizer report $f: $(grep -m 1 -E 'SUMMARY|runtime error' "$f" || head -n 1 "$f")"
done
[ $n -le 5 ] || echo "... $n report files in all"
pattern='AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:'
for f in "$logs"/*; do
    [ -e "$f" ] && grep -qE "$pattern" "$f" || continue
    found=1
    echo "=== sanitizer output in server log $f"
    grep -E -A 20 "$pattern" "$f" | head -n 45 || true # (SIGPIPE from head is not a failure)
done
echo "sanitize: total $((SECONDS - start))s"
if [ $found -ne 0 ]; then
    echo "sanitize: SANITIZER REPORTS (above; kept in $dir)"
    exit 1
fi
if [ $status -ne 0 ]; then
    echo "sanitize: tests failed, no sanitizer report (kept in $dir)"
    exit 1
fi
echo "sanitize: no sanitizer reports; tests passed"
if [ -n "${SANITIZE_KEEP:-}" ]; then echo "sanitize: kept $dir"; else rm -rf "$dir"; fi
