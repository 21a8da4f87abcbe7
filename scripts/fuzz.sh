#!/usr/bin/env bash
# Builds the libFuzzer targets in fuzz/ against the PostgreSQL-free code in src/core, with
# AddressSanitizer and UBSan, and runs each for FUZZ_SECONDS (default 20) from a small seed corpus
# written here plus the files in fuzz/corpus/<target>/ if any (commit there a minimised reproducer
# of every bug fuzzing finds: each run replays it). Exits 1 if a target fails to build, crashes,
# or a sanitizer reports anything; reproducers are left in the build directory (printed at the end).
#
#   FUZZ_SECONDS=60 scripts/fuzz.sh                 # all targets
#   FUZZ_TARGETS="scheduler_fuzz" scripts/fuzz.sh   # some of them
#   FUZZ_BUILD_DIR=/tmp/x scripts/fuzz.sh           # default /tmp/pg_sync_fuzz
#
# Re-run one reproducer: $FUZZ_BUILD_DIR/bin/<target> <crash file>
# scripts/test.sh fuzz (and so CI) runs it with FUZZ_SECONDS=15. Needs clang-14 with libFuzzer
# (libclang-rt-14-dev), libcurl, OpenSSL and nlohmann-json headers (scripts/setup.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZ_SECONDS=${FUZZ_SECONDS:-20}
BUILD=${FUZZ_BUILD_DIR:-/tmp/pg_sync_fuzz}
CXX=${CXX_FUZZ:-clang++-14}
JOBS=$(nproc 2>/dev/null || echo 2)
command -v "$CXX" >/dev/null || { echo "fuzz.sh: $CXX not found (apt-get install clang-14)"; exit 1; }

if [ -z "${FUZZ_TARGETS:-}" ]; then
    FUZZ_TARGETS=""
    for f in fuzz/*_fuzz.cpp; do FUZZ_TARGETS+="$(basename "$f" .cpp) "; done
fi
TARGETS=$FUZZ_TARGETS
# Everything in src/core, as the CMake library does (envelope needs validate, and so on).
CORE_SOURCES=(src/core/*.cpp)

# shellcheck disable=SC2054 # the commas belong to -fsanitize
COMMON=(-std=c++17 -g -O1 -fno-omit-frame-pointer -Isrc
        -fsanitize=address,undefined -fno-sanitize-recover=all)
rm -rf "${BUILD:?}/obj" "${BUILD:?}/bin" "${BUILD:?}/corpus" "${BUILD:?}/artifacts" "${BUILD:?}/logs"
mkdir -p "$BUILD/obj" "$BUILD/bin" "$BUILD/corpus" "$BUILD/artifacts" "$BUILD/logs"
start=$SECONDS

# --- Build ---------------------------------------------------------------------------------------
# src/core gets coverage instrumentation (fuzzer-no-link) but not -Werror: it is built with its own
# flags elsewhere, and a new clang warning there should not stop fuzzing. The targets use -Werror.
# Paths are assumed free of spaces (the commands go through bash -c).
echo "fuzz.sh: building in $BUILD ($CXX)"
# run_all CMD... : runs each command line (one per stdin line) JOBS at a time; fails if any fails.
run_all() {
    local pids=() line rc=0 pid
    while IFS= read -r line; do
        bash -c "$line" &
        pids+=($!)
        if [ ${#pids[@]} -ge "$JOBS" ]; then
            wait "${pids[0]}" || rc=1
            pids=("${pids[@]:1}")
        fi
    done
    for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
    return $rc
}
for src in "${CORE_SOURCES[@]}"; do
    obj="$BUILD/obj/$(basename "${src%.cpp}").o"
    echo "$CXX ${COMMON[*]} -fsanitize=fuzzer-no-link -c $src -o $obj"
done | run_all || { echo "fuzz.sh: building src/core failed"; exit 1; }
for t in $TARGETS; do
    echo "$CXX ${COMMON[*]} -fsanitize=fuzzer -Wall -Wextra -Werror fuzz/$t.cpp $BUILD/obj/*.o -o $BUILD/bin/$t -lcurl -lcrypto -lrdkafka"
done | run_all || { echo "fuzz.sh: building the fuzz targets failed"; exit 1; }
echo "fuzz.sh: built $(wc -w <<<"$TARGETS") targets in $((SECONDS - start))s"

# --- Seed corpus ---------------------------------------------------------------------------------
# A few valid inputs per target (formats are described at the top of each fuzz/*.cpp).
seed() { # seed TARGET NAME PRINTF-FORMAT
    mkdir -p "$BUILD/corpus/$1"
    # shellcheck disable=SC2059 # the seed is the format: its \x escapes are the point
    printf -- "$3" >"$BUILD/corpus/$1/$2"
}
seed validate_fuzz name 'orders-webhook_v1.2'
seed validate_fuzz url 'https://example.com/hooks/orders?tenant=7'
seed validate_fuzz url6 'http://[::1]:8080/h'
seed validate_fuzz headers '{"Authorization":"Bearer abc","X-Tenant":"7"}'
seed validate_fuzz secret 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'
seed validate_fuzz kafka 'kafka://b1.example.com:9092,[::1]:9093,10.0.0.7/orders.v1'
seed validate_fuzz kafka_settings '{"compression.type":"lz4","linger.ms":5,"sasl.mechanism":"SCRAM-SHA-256","sasl.password":"x"}'
seed validate_fuzz secret64 'whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0NTY3ODkrLw'

seed json_render_fuzz escapes 'hello "world"\n\t\\ \x01\x1f\x7f'
seed json_render_fuzz utf8 'caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80'
seed json_render_fuzz number '-12.5e+3'
seed json_render_fuzz zero '0'
seed json_render_fuzz bad_number '01.e'
seed json_render_fuzz nan 'NaN'
seed json_render_fuzz object 'id\x0042\x00name\x00Ann\x00price\x00-0.5E-7'

seed retry_after_fuzz delta '120'
seed retry_after_fuzz delta_ws ' 0 \r\n'
seed retry_after_fuzz big '18446744073709551616'
seed retry_after_fuzz imf 'Sun, 06 Nov 1994 08:49:37 GMT'
seed retry_after_fuzz imf_future 'Fri, 31 Dec 9999 23:59:59 GMT'
seed retry_after_fuzz rfc850 'Sunday, 06-Nov-94 08:49:37 GMT'
seed retry_after_fuzz asctime 'Sun Nov  6 08:49:37 1994'
seed retry_after_fuzz fraction '1.5'

# Fields separated by \x1f, ten per event; \xff alone is NULL.
seed envelope_fuzz update 'update\x1fpublic.orders\x1f{"id":7}\x1f{"id":7,"total":10.5}\x1f{"id":7,"total":9}\x1f\xff\x1f\xff\x1f2026-11-23T10:15:02.123456Z\x1f1042\x1f80511'
seed envelope_fuzz emit 'emit\x1f\xff\x1f"order-7"\x1f\xff\x1f\xff\x1forder.paid\x1f{"amount":[1,2.5e3,null,true],"note":"caf\xc3\xa9\\n"}\x1f2026-11-23T10:15:02.123456Z\x1f1043\x1f80512'
seed envelope_fuzz truncate_insert 'truncate\x1fpublic."Orders"\x1f{"id":1}\x1f\xff\x1f\xff\x1f\xff\x1f\xff\x1f1970-01-01T00:00:00.000000Z\x1f-1\x1f0\x1finsert\x1fpublic."Orders"\x1f{"id":1}\x1f{"id":1,"tags":["a","b"]}\x1f\xff\x1f\xff\x1f\xff\x1f2026-11-23T10:15:02.123457Z\x1f1795428902123456\x1f18446744073709551615'

# 8-byte header, then 4 bytes per event (kind/state/timing, table/key, id delta, bytes).
seed scheduler_fuzz mixed '\x04\x04\x00\xff\x00\x00\x00\x0a\x0c\x04\x00\x10\x0d\x00\x00\x01\x0e\x08\x00\x02\x00\x05\x00\x03\x0c\x05\x00\x04\x2c\x09\x00\x05\x0c\x04\x03\x06'
seed scheduler_fuzz byte_cap '\x03\x02\x00\x02\x40\x00\x00\x0a\x0c\x04\x00\x03\x0c\x04\x00\x03\x0c\x08\x00\x03\x0c\x0c\x00\x03\x0c\x04\x00\xff\x0d\x00\x00\x03'
seed scheduler_fuzz probe_raw '\x05\x03\x01\x03\x00\x00\x06\x0b\x0c\x04\x00\x01\x0e\x04\x00\x01\x0c\x08\x00\x01\x04\x0c\x00\x01\x0c\x0c\x00\x01'
seed scheduler_fuzz bad_ids '\x04\x04\x00\xff\x00\x00\x08\x0a\x0c\x04\x05\x10\x0c\x08\xff\x10'
seed endpoint_auth_fuzz token '\x00{"access_token":"abc.def","token_type":"Bearer","expires_in":3600}'
seed endpoint_auth_fuzz token_error '\x00{"error":"invalid_client","error_description":"bad"}'
seed endpoint_auth_fuzz config '\x01{"token_url":"https://auth.example.com/t","client_id":"a b","client_secret":"s&t","scope":"x:y","client_auth":"body"}'
seed endpoint_auth_fuzz pem '\x02-----BEGIN CERTIFICATE-----\nMIIBizCCATGgAwIBAgIU\n-----END CERTIFICATE-----\n'
seed endpoint_auth_fuzz tls '\x03-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\x00-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\x00'

# Committed inputs (regression reproducers), copied: libFuzzer adds new inputs to its corpus directory.
for d in fuzz/corpus/*/; do
    [ -d "$d" ] || continue
    mkdir -p "$BUILD/corpus/$(basename "$d")"
    cp "$d"* "$BUILD/corpus/$(basename "$d")/" 2>/dev/null || true
done

# --- Run -----------------------------------------------------------------------------------------
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1:symbolize=1}
command -v llvm-symbolizer-14 >/dev/null && export ASAN_SYMBOLIZER_PATH=${ASAN_SYMBOLIZER_PATH:-$(command -v llvm-symbolizer-14)}

failed=()
summary=()
for t in $TARGETS; do
    mkdir -p "$BUILD/corpus/$t" "$BUILD/artifacts/$t"
    log="$BUILD/logs/$t.log"
    echo "fuzz.sh: running $t for ${FUZZ_SECONDS}s"
    rc=0
    "$BUILD/bin/$t" "$BUILD/corpus/$t" -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$BUILD/artifacts/$t/" >"$log" 2>&1 || rc=$?
    # (|| true: a crash on a seed input leaves no statistics, and the report below must still run)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1) || true
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1) || true
    cov=$( (grep -Eo 'cov: [0-9]+' "$log" || true) | tail -n 1 | tr -d 'cov: ')
    # Any sanitizer or invariant report fails the run, even if libFuzzer's exit status did not say so.
    if [ "$rc" -ne 0 ] || grep -qE '^==[0-9]+==ERROR|runtime error:|invariant violated|deadly signal' "$log"; then
        failed+=("$t")
        summary+=("$(printf '%-18s FAILED (exit %s) execs=%s  log: %s' "$t" "$rc" "${execs:-?}" "$log")")
        (grep -E 'ERROR|runtime error|invariant violated|deadly signal|SUMMARY|Test unit written' "$log" || true) | head -n 8 | sed 's/^/    /'
    else
        summary+=("$(printf '%-18s ok  execs=%-9s exec/s=%-7s cov=%s' "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}")")
    fi
done

echo
echo "fuzz.sh: summary (${FUZZ_SECONDS}s per target, total $((SECONDS - start))s)"
printf '  %s\n' "${summary[@]}"
if [ ${#failed[@]} -ne 0 ]; then
    echo "fuzz.sh: FAILED: ${failed[*]} (reproducers under $BUILD/artifacts, logs under $BUILD/logs)"
    exit 1
fi
echo "fuzz.sh: no crashes or sanitizer reports"
