# shellcheck shell=bash disable=SC2154,SC2034  # $work, $PY, $root, $so set by the benchmark sourcing it; nginx_port, nginx_pid set for it
# Shell helpers of bench/growth and bench/scale. Source it after setting $work (the run's work
# directory), $PY (/usr/bin/python3) and a log function, and after sourcing test/lib/pg.sh.

# nginx and psycopg2 serve the benchmarks only, so scripts/setup.sh does not install them.
bench_packages() {
    local missing=() pkg
    for pkg in nginx python3-psycopg2; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

stop_pid() {   # stop_pid PID SIGNAL: signal one process we started, wait for it
    local pid=$1 sig=$2
    [ -n "$pid" ] || return 0
    kill "-$sig" "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 10))
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.05; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# How busy the CPUs were over one second (percent of all cores, /proc/stat).
cpu_busy_pct() {
    local a b
    a=$(head -n 1 /proc/stat); sleep 1; b=$(head -n 1 /proc/stat)
    printf '%s\n%s\n' "$a" "$b" | awk '{t = 0; for (i = 2; i <= NF; i++) t += $i; idle = $5 + $6}
        NR == 1 {t0 = t; i0 = idle} NR == 2 {printf "%.0f", 100 * (1 - (idle - i0) / (t - t0))}'
}

# start_nginx SED_EXPRESSION: bench/delivery.d/nginx.conf (204 to every POST), on its own
# prefix ($work/nginx) and a free loopback port, in the foreground as our child; the sed
# expression edits the configuration further. Sets nginx_port and nginx_pid; returns once nginx
# answered a POST with 204.
start_nginx() {
    nginx_port=$(pg_free_port)
    mkdir -p "$work/nginx"
    chmod 711 "$work"   # nginx's workers (nobody) reach their temp dirs under it
    chmod 755 "$work/nginx"
    local user_line=""
    [ "$(id -u)" != 0 ] || user_line="user nobody nogroup;"
    sed -e "s|@PORT@|$nginx_port|g; s|@PREFIX@|$work/nginx|g; s|@USER@|$user_line|" \
        -e "${1:-}" "$(dirname "${BASH_SOURCE[0]}")/delivery.d/nginx.conf" >"$work/nginx/nginx.conf"
    "${NGINX:-/usr/sbin/nginx}" -e "$work/nginx/error.log" -p "$work/nginx" -c "$work/nginx/nginx.conf" &
    nginx_pid=$!
    "$PY" - "$nginx_port" <<'PY' || { cat "$work/nginx/error.log" >&2; return 1; }
import http.client, sys, time
port = int(sys.argv[1])
for _ in range(100):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5); c.connect(); break
    except OSError:
        time.sleep(0.05)
else:
    sys.exit("nginx did not start")
c.request("POST", "/hook", body=b"{}", headers={"Content-Type": "application/json"})
r = c.getresponse(); r.read()
if r.status != 204:
    sys.exit(f"nginx answered {r.status}")
PY
}

check_nginx() {   # every answer was 204
    if [ -s "$work/nginx/unexpected.log" ]; then
        log "nginx answered other than 204:"; head -n 5 "$work/nginx/unexpected.log" >&2; exit 1
    fi
}

# worker_pid DB: waits (30 s at most) for the delivery worker of database DB; prints its pid.
worker_pid() {
    local deadline=$((SECONDS + 30)) pid=
    while :; do
        pid=$(PGDATABASE=$1 q -c "SELECT pid FROM pg_sync.workers WHERE database = current_database()")
        [ -z "$pid" ] || { echo "$pid"; return 0; }
        [ $SECONDS -lt $deadline ] || { log "no delivery worker in $1 30 s after CREATE EXTENSION"; return 1; }
        sleep 0.2
    done
}

# The run's machine and build, as key=value lines for meta.txt.
bench_meta() {
    echo "date=$(date -u +%FT%TZ)"
    echo "cores=$(nproc)"
    echo "cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
    echo "mem=$(awk '/^MemTotal:/ {printf "%.0f GB", $2 / 1048576}' /proc/meminfo)"
    echo "postgres=$(q -c 'show server_version')"
    echo "git=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$root" diff --quiet HEAD -- src sql Makefile 2>/dev/null || echo ' (modified)')"
    echo "so_md5=$(md5sum "$so" | cut -c1-12)"
}
