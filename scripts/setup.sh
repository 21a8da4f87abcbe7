#!/usr/bin/env bash
# Installs what is missing on Debian 12 (apt), then builds and installs pg_sync.
# Used by scripts/demo.sh, scripts/test.sh and CI. Idempotent; quick when all is there.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/platform.sh && require_platform

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo

packages=(
    postgresql-15 postgresql-server-dev-15 postgresql-client-15 postgresql-contrib
    libcurl4-openssl-dev libssl-dev nlohmann-json3-dev googletest libgtest-dev
    # the Kafka sink (librdkafka, with rdkafka_mock.h for the tests' mock cluster) and kcat,
    # the tests' independent consumer
    librdkafka-dev kcat pkg-config
    g++ make cmake clang-14 llvm-14 python3 ca-certificates
    # test/130 runs postgres_exporter with docs/monitoring's query file
    prometheus-postgres-exporter
    # scripts/fuzz.sh: libFuzzer and clang's sanitizer runtimes (only recommended by clang-14,
    # which --no-install-recommends skips); llvm-14 has llvm-symbolizer-14 for the reports.
    # scripts/sanitize.sh uses g++'s libasan8/libubsan1 (dependencies of g++).
    libclang-rt-14-dev
)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# examples/receivers (Node.js) and test/125 (the standardwebhooks npm package, from the npm
# registry): Debian's nodejs and npm, unless node and npm are there already (a Node.js from
# elsewhere, e.g. NodeSource's, brings its own npm and conflicts with Debian's npm package).
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

export PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
make -s WERROR=1 PG_CONFIG=$PG_CONFIG >/dev/null
$SUDO make -s install PG_CONFIG=$PG_CONFIG >/dev/null
echo "setup: pg_sync built and installed into $($PG_CONFIG --pkglibdir)"
