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

# --- The items table of test/210 and test/215 --------------------------------------------------
# For a test with a server (test/lib/pg.sh, status.sh) and a cluster NAME "kc".
#
# kafka_test_exit             the EXIT trap: the server log's errors when the test failed, then
#                             stops the clusters and the server
# kafka_items TIMEOUT_MS [KAFKA_SETTINGS_JSON]
#   CREATE EXTENSION; endpoint "k" to kc's topic (retries from 100 ms to 1 s, max_attempts 1000);
#   table items (id, v), every change bumps v by one, so a key's committed versions are 1..v;
#   200 rows; writes the writers' scripts
# kafka_writers SECONDS       4 pgbench clients in the background (updates of the 200 first rows,
#                             inserts, a transaction that does both, rolled-back changes);
#                             sets WRITERS_PID, logs to $PG_DIR/pgbench.log
# kafka_writers_done          waits for them, fails if they failed
# kafka_verify CASE [MAX_DUPLICATES [CRASH_MS]]   waits until the endpoint has nothing pending,
#                             then checks the topic against the table (test/lib/kafka_verify.py)

kafka_test_exit() {
    local rc=$?
    if [ $rc -ne 0 ] && [ -n "${PG_DIR:-}" ]; then
        grep -E "ERROR|FATAL|PANIC|TRAP|terminated|pg_sync" "$PG_DIR/server.log" | tail -n 30 >&2 || true
    fi
    kafka_stop_all
    pg_stop
}

kafka_items() {
    local timeout_ms=$1 settings=${2:-'{}'}
    q >/dev/null <<SQL
CREATE EXTENSION pg_sync;
SELECT pg_sync.create_endpoint('k', '$kc_URL', retry_base_ms => 100, retry_max_ms => 1000, timeout_ms => $timeout_ms,
                               max_attempts => 1000, kafka_settings => '$settings');
CREATE TABLE items (id bigint PRIMARY KEY, v int NOT NULL);
CREATE SEQUENCE item_ids START 1001;
SELECT pg_sync.track('items', 'k');
INSERT INTO items SELECT g, 1 FROM generate_series(1, 200) g;
SQL
    cat >"$PG_DIR/update.sql" <<'SQL'
\set k random(1, 200)
UPDATE items SET v = v + 1 WHERE id = :k;
SQL
    cat >"$PG_DIR/insert.sql" <<'SQL'
INSERT INTO items VALUES (nextval('item_ids'), 1);
SQL
    cat >"$PG_DIR/multi.sql" <<'SQL'
\set k random(1, 200)
BEGIN;
UPDATE items SET v = v + 1 WHERE id = :k;
INSERT INTO items VALUES (nextval('item_ids'), 1);
UPDATE items SET v = v + 1 WHERE id = currval('item_ids');
COMMIT;
SQL
    cat >"$PG_DIR/rollback.sql" <<'SQL'
\set k random(1, 200)
BEGIN;
UPDATE items SET v = v + 1000000 WHERE id = :k;
INSERT INTO items VALUES (nextval('item_ids') + 1000000, 1000000);
ROLLBACK;
SQL
    chmod 644 "$PG_DIR"/*.sql
}

kafka_writers() {
    pgbench -n -c 4 -j 2 -T "$1" -f "$PG_DIR/update.sql@5" -f "$PG_DIR/insert.sql@2" \
        -f "$PG_DIR/multi.sql@2" -f "$PG_DIR/rollback.sql@1" >"$PG_DIR/pgbench.log" 2>&1 &
    WRITERS_PID=$!
}

kafka_writers_done() { wait "$WRITERS_PID" || { cat "$PG_DIR/pgbench.log"; fail "writers failed"; }; }

kafka_verify() {
    wait_status k 90 "pending = 0 AND dead = 0" "$1: everything delivered"
    kafka_read kc >"$PG_DIR/records.jsonl"
    q -c "COPY (SELECT id, v FROM items ORDER BY id) TO STDOUT" >"$PG_DIR/items.rows"
    /usr/bin/python3 "$KAFKA_LIB/kafka_verify.py" "$PG_DIR/records.jsonl" "$PG_DIR/items.rows" public.items \
        "$(_kafka_var kc PARTITIONS)" "${2:-0}" ${3:+"$3"} || fail "$1: the topic does not match the table"
    assert_eq "$(q -c "SELECT count(*) FROM items WHERE v >= 1000000 OR id > 1000000")" 0 "$1: rolled-back rows in the table"
}
