# A long-lived psql session that a test feeds statement by statement, e.g. to hold a
# transaction open while other sessions act. Source after test/lib/assert.sh.
#   session_open          start it (psql on the test server)
#   session "SQL"         run SQL in it; wait at most 30 s for it to finish; fail on an ERROR
session_open() {
    coproc SESSION { psql -X -q -At -v ON_ERROR_STOP=1 2>&1; }
}

session() {
    echo "$1" >&"${SESSION[1]}"
    echo "SELECT 'session-done';" >&"${SESSION[1]}"
    local line
    while IFS= read -r -t 30 line <&"${SESSION[0]}"; do
        [ "$line" == "session-done" ] && return 0
        [[ "$line" == *ERROR* ]] && fail "session: $line"
    done
    fail "session did not answer within 30 s"
}
