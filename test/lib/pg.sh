# Throwaway PostgreSQL servers for tests, benchmarks and the demo. Source this file.
#
# pg_start NAME [extra postgresql.conf lines...]
#   initdb (as the unprivileged OS user "postgres") into a fresh temp directory, on a free
#   (PG_PRELOAD overrides shared_preload_libraries, default pg_sync)
#   loopback port, with pg_sync preloaded; sets PGHOST, PGPORT, PGUSER, PGDATABASE, PG_DIR,
#   PG_PID. psql then works as root over TCP with trust auth.
# pg_stop
#   fast shutdown by PID, kill -9 if it does not go within 30 s; removes the directory.
#   Call it from a trap so that a failing test still stops its server.
#
# Environment (all optional; unset keeps the defaults):
#   PG_BIN        PostgreSQL binaries (default /usr/lib/postgresql/15/bin); scripts/sanitize.sh
#                 points it at a relocated copy whose postgres runs pg_sync built with ASan/UBSan
#   PG_PRELOAD    shared_preload_libraries (default pg_sync)
#   PG_KEEP=1     pg_stop keeps the directory
#   PG_SAVE_LOGS  a directory: pg_stop copies server.log there first (as <dir name>.log)

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PG_OS_USER=${PG_OS_USER:-postgres}
# Use the PostgreSQL 15 binaries directly, not Debian's pg_wrapper (which depends on clusters).
export PATH="$PG_BIN:$PATH"

pg_free_port() {
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

pg_as_user() { su "$PG_OS_USER" -s /bin/bash -c "$*"; }

pg_start() {
    local name=$1; shift
    PG_DIR=$(mktemp -d "/tmp/pg_sync_${name}.XXXXXX")
    chown "$PG_OS_USER" "$PG_DIR"
    chmod 755 "$PG_DIR"
    PGPORT=$(pg_free_port)
    pg_as_user "'$PG_BIN/initdb' -D '$PG_DIR/data' -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >'$PG_DIR/initdb.log' 2>&1" \
        || { cat "$PG_DIR/initdb.log"; return 1; }
    cat >>"$PG_DIR/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PGPORT
unix_socket_directories = '$PG_DIR'
shared_preload_libraries = '${PG_PRELOAD-pg_sync}'
fsync = on
log_min_messages = warning
log_line_prefix = '%m [%p] %d '
CONF
    local line
    for line in "$@"; do echo "$line" >>"$PG_DIR/data/postgresql.conf"; done
    pg_as_user "'$PG_BIN/pg_ctl' -D '$PG_DIR/data' -l '$PG_DIR/server.log' -w -t 60 start >/dev/null" \
        || { cat "$PG_DIR/server.log"; return 1; }
    PG_PID=$(head -n 1 "$PG_DIR/data/postmaster.pid")
    export PGHOST=127.0.0.1 PGPORT PGUSER=postgres PGDATABASE=postgres PG_DIR PG_PID
}

# Starts a stopped (or crashed) server again on the same directory and port.
pg_restart_after_crash() {
    pg_as_user "'$PG_BIN/pg_ctl' -D '$PG_DIR/data' -l '$PG_DIR/server.log' -w -t 120 start >/dev/null" \
        || { tail -n 50 "$PG_DIR/server.log"; return 1; }
    PG_PID=$(head -n 1 "$PG_DIR/data/postmaster.pid")
}

pg_stop() {
    [ -n "${PG_DIR:-}" ] || return 0
    if [ -n "${PG_PID:-}" ] && kill -0 "$PG_PID" 2>/dev/null; then
        kill -INT "$PG_PID" 2>/dev/null || true
        local deadline=$((SECONDS + 30))
        while kill -0 "$PG_PID" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
        kill -9 "$PG_PID" 2>/dev/null || true
    fi
    if [ -n "${PG_SAVE_LOGS:-}" ] && [ -f "$PG_DIR/server.log" ]; then
        cp "$PG_DIR/server.log" "$PG_SAVE_LOGS/$(basename "$PG_DIR").log" || true
    fi
    if [ -n "${PG_KEEP:-}" ]; then
        echo "kept $PG_DIR" >&2
    else
        rm -rf "$PG_DIR"
    fi
    PG_DIR= PG_PID=
}

# Crash tests: the PIDs of the server's processes (whose working directory is the data directory:
# the postmaster and all of its children, also once they are orphaned), and a wait_for condition
# that kill -9s whatever of them is left and succeeds once none is.
server_pids() {
    local p
    for p in /proc/[0-9]*; do
        [ "$(readlink "$p/cwd" 2>/dev/null)" == "$PG_DIR/data" ] && echo "${p#/proc/}"
    done
    return 0
}
no_server_left() {
    local pids; pids=$(server_pids)
    [ -z "$pids" ] && return 0
    kill -9 $pids 2>/dev/null || true
    return 1
}

# psql quiet, stop on error, unaligned: q "SQL" prints the result.
q() { psql -X -q -v ON_ERROR_STOP=1 -At "$@"; }
