#!/usr/bin/env bash
# The Kafka sink alone, without PostgreSQL: what core/kafka_sink, core/kafka_records and
# librdkafka cost and reach against the mock cluster (bench/kafka.d/sink_only.cpp), to tell the
# sink's share of bench/kafka's figures from the worker's passes. Builds with g++ -O2 against
# src/core, starts a mock cluster (test/lib/kafka.sh), runs each BATCHxIN_FLIGHT of VARIANTS
# (default "100x16 1000x16") ROUNDS times (3) with EVENTS events (200000), one JSON line each.
# A variant may name librdkafka settings after a comma, as the endpoint's kafka_settings would:
# "1000x16,linger.ms=5,batch.num.messages=2000".
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
EVENTS=${EVENTS:-200000} ROUNDS=${ROUNDS:-3} VARIANTS=${VARIANTS:-100x16 1000x16}
. "$root/test/lib/assert.sh"
. "$root/test/lib/kafka.sh"
bin=$(mktemp -d /tmp/pg_sync_sink_only.XXXXXX)
trap 'kafka_stop_all; rm -rf "$bin"' EXIT
sources=()
for c in kafka_records kafka_sink kafka_config envelope http_client retry_policy; do sources+=("$root/src/core/$c.cpp"); done
g++ -O2 -std=c++17 -I"$root/src" "$here/sink_only.cpp" "${sources[@]}" -o "$bin/sink_only" -lrdkafka -lcurl -lcrypto
kafka_start kc 3 warmup 6
n=0
for round in $(seq 1 "$ROUNDS"); do
    for v in $VARIANTS; do
        topic="sink_$((++n))"
        kafka_cmd kc create "$topic" 6
        shape=${v%%,*} settings='{}'
        if [ "$shape" != "$v" ]; then
            settings=$(/usr/bin/python3 -c 'import json,sys; print(json.dumps(dict(kv.split("=", 1) for kv in sys.argv[1].split(","))))' "${v#*,}")
        fi
        printf '%s ' "$v"
        "$bin/sink_only" "$kc_BOOTSTRAP" "$topic" "$EVENTS" "${shape%x*}" "${shape#*x}" "$settings"
    done
done
