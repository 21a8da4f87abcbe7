# A Kafka cluster for the integration tests and bench/kafka: librdkafka's mock cluster (real
# Kafka protocol on loopback ports, test/lib/kafka_mock.c), built on first use, and kcat as the
# independent consumer. Source after test/lib/assert.sh.
#
# kafka_start NAME [BROKERS [TOPIC [PARTITIONS]]]   (defaults 3 events 6)
#   builds test/lib/kafka_mock.c if needed and starts it; sets NAME_BOOTSTRAP, NAME_URL
#   (kafka://BOOTSTRAP/TOPIC), NAME_TOPIC, NAME_PARTITIONS, NAME_PID, NAME_DIR.
# kafka_cmd NAME COMMAND...   one command of kafka_mock.c (down 1, up 1, leader TOPIC P B,
#                             errors 0 6 7, rtt 1 200, ...); waits for its answer, fails on error
# kafka_read NAME [TOPIC]     every record of the topic, one kcat JSON envelope per line, in
#                             partition and offset order
# kafka_stop_all              stops every cluster (for the EXIT trap)

KAFKA_LIB="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
KAFKA_MOCK_BIN=${KAFKA_MOCK_BIN:-/tmp/pg_sync_kafka_mock}
declare -ga _KAFKA_NAMES=()

_kafka_var() { local v="${1}_$2"; printf '%s' "${!v:-}"; }

kafka_build() {
    if [ ! -x "$KAFKA_MOCK_BIN" ] || [ "$KAFKA_LIB/kafka_mock.c" -nt "$KAFKA_MOCK_BIN" ]; then
        cc -O1 -Wall -Werror -o "$KAFKA_MOCK_BIN.tmp" "$KAFKA_LIB/kafka_mock.c" -lrdkafka -ldl || fail "kafka_mock does not build"
        mv "$KAFKA_MOCK_BIN.tmp" "$KAFKA_MOCK_BIN"
    fi
}

kafka_start() {
    local name=$1 brokers=${2:-3} topic=${3:-events} partitions=${4:-6}
    kafka_build
    local dir; dir=$(mktemp -d "/tmp/pg_sync_kafka_$name.XXXXXX")
    mkfifo "$dir/ctl"
    "$KAFKA_MOCK_BIN" "$brokers" "$topic" "$partitions" <"$dir/ctl" >"$dir/out" 2>"$dir/err" &
    local pid=$!
    # Hold the control pipe open (the cluster ends at end of input): a descriptor per cluster.
    local fd
    exec {fd}>"$dir/ctl"
    local deadline=$((SECONDS + 20))
    until grep -q '^bootstrap ' "$dir/out" 2>/dev/null; do
        kill -0 "$pid" 2>/dev/null || { cat "$dir/err" >&2; fail "kafka_mock $name did not start"; }
        [ $SECONDS -lt $deadline ] || fail "kafka_mock $name did not start within 20 s"
        sleep 0.05 # poll interval
    done
    local bootstrap; bootstrap=$(awk '/^bootstrap /{print $2; exit}' "$dir/out")
    printf -v "${name}_BOOTSTRAP" '%s' "$bootstrap"
    printf -v "${name}_URL" '%s' "kafka://$bootstrap/$topic"
    printf -v "${name}_TOPIC" '%s' "$topic"
    printf -v "${name}_PARTITIONS" '%s' "$partitions"
    printf -v "${name}_PID" '%s' "$pid"
    printf -v "${name}_DIR" '%s' "$dir"
    printf -v "${name}_FD" '%s' "$fd"
    _KAFKA_NAMES+=("$name")
}

kafka_cmd() {
    local name=$1; shift
    local dir fd before
    dir=$(_kafka_var "$name" DIR) fd=$(_kafka_var "$name" FD)
    before=$(grep -c -E '^(ok|error) ' "$dir/out" || true)
    echo "$*" >&"$fd"
    local deadline=$((SECONDS + 10))
    until [ "$(grep -c -E '^(ok|error) ' "$dir/out" || true)" -gt "$before" ]; do
        [ $SECONDS -lt $deadline ] || fail "kafka_mock $name: no answer to: $*"
        sleep 0.02 # poll interval
    done
    if tail -n 1 "$dir/out" | grep -q '^error'; then
        fail "kafka_mock $name: $* -> $(tail -n 1 "$dir/out")"
    fi
}

kafka_read() {
    local name=$1 topic=${2:-$(_kafka_var "$1" TOPIC)}
    kcat -C -b "$(_kafka_var "$name" BOOTSTRAP)" -t "$topic" -o beginning -e -q -J \
        -X log_level=0 2>/dev/null
}

kafka_stop_all() {
    local name fd pid
    for name in "${_KAFKA_NAMES[@]}"; do
        fd=$(_kafka_var "$name" FD) pid=$(_kafka_var "$name" PID)
        [ -n "$fd" ] && exec {fd}>&- 2>/dev/null
        if [ -n "$pid" ]; then
            kill "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
        [ -n "${KAFKA_KEEP:-}" ] || rm -rf "$(_kafka_var "$name" DIR)"
    done
    _KAFKA_NAMES=()
}
