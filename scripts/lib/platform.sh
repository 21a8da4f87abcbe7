# The platform the two commands (scripts/demo.sh, scripts/test.sh) and scripts/setup.sh need:
# Debian 12 (bookworm), for its apt packages (postgresql-15 & co.), and root, or sudo to become
# root (apt-get, make install, servers run as the OS user postgres). Source this file and call
# require_platform first thing, before anything is installed or built: elsewhere they stop at
# once with the reason instead of failing half-way.
require_platform() {
    local why="" codename="" pretty=""
    if [ ! -f /etc/debian_version ]; then
        why="this system is not Debian (no /etc/debian_version)"
    else
        if [ -r /etc/os-release ]; then
            codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
            pretty=$(. /etc/os-release && echo "${PRETTY_NAME:-}")
        fi
        [ "$codename" = bookworm ] ||
            why="this system is ${pretty:-Debian $(cat /etc/debian_version)}, not Debian 12 (bookworm)"
    fi
    if [ -z "$why" ] && [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null 2>&1; then
        why="it runs as $(id -un), not root, and sudo is not installed"
    fi
    [ -n "$why" ] || return 0
    echo "$(basename "$0"): cannot run here: $why." >&2
    echo "It needs Debian 12 (bookworm), root or a user with sudo, and network access for apt and" >&2
    echo "npm: see README.md, the two commands at the top." >&2
    exit 1
}
