# Tiny assertions for the bash integration tests. Source after test/lib/pg.sh.
fail() { echo "FAIL: $*" >&2; exit 1; }
assert_eq() { [ "$1" == "$2" ] || fail "${3:-values differ}: got [$1], expected [$2]"; }
assert_contains() { [[ "$1" == *"$2"* ]] || fail "expected to find [$2] in: $1"; }
# wait_for DESCRIPTION SECONDS COMMAND...: polls COMMAND until it succeeds or the deadline passes.
wait_for() {
    local what=$1 secs=$2; shift 2
    local deadline=$((SECONDS + secs))
    until "$@"; do
        [ $SECONDS -lt $deadline ] || fail "timed out after ${secs}s waiting for: $what"
        sleep 0.05 # poll interval
    done
}
