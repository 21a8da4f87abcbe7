# Polling pg_sync.endpoint_status in the delivery tests. Source after pg.sh and assert.sh.

# cond "SQL boolean": succeeds when it is true (for wait_for); a failing query counts as false
# (the server may be restarting).
cond() { [ "$(q -c "SELECT coalesce(($1)::text, 'false')" 2>/dev/null)" == true ]; }
# st EP COLUMN: one column of pg_sync.endpoint_status.
st() { q -c "SELECT $2 FROM pg_sync.endpoint_status WHERE endpoint = '$1'"; }
# status_line EP: the interesting part of endpoint_status, for failure messages.
status_line() {
    q -c "SELECT format('state=%s pending=%s in_flight=%s dead=%s delivered=%s failed=%s consecutive=%s last_status=%s last_error=%s next_attempt_at=%s paused_reason=%s',
                 state, pending, in_flight, dead, delivered_total, failed_attempts_total, consecutive_failures,
                 last_status, last_error, next_attempt_at, paused_reason)
            FROM pg_sync.endpoint_status WHERE endpoint = '$1'" 2>&1
}
# wait_status EP SECS "SQL boolean over endpoint_status columns" DESCRIPTION
wait_status() {
    local ep=$1 secs=$2 expr=$3 what=$4
    local deadline=$((SECONDS + secs))
    until cond "(SELECT $expr FROM pg_sync.endpoint_status WHERE endpoint = '$ep')"; do
        [ $SECONDS -lt $deadline ] || fail "endpoint $ep: timed out after ${secs}s waiting for $what ($(status_line "$ep"))"
        sleep 0.05 # poll interval
    done
}
# new_case EP URL [create_endpoint named args]: endpoint EP, table t_EP (id int PK, v int) tracked for it.
new_case() {
    local ep=$1 url=$2 args=${3:+, $3}
    q >/dev/null <<SQL
SELECT pg_sync.create_endpoint('$ep', '$url'$args);
CREATE TABLE t_$ep (id int PRIMARY KEY, v int NOT NULL DEFAULT 0);
SELECT pg_sync.track('t_$ep', '$ep');
SQL
}
