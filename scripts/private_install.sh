#!/usr/bin/env bash
# Builds this tree and installs it into a private, relocated copy of PostgreSQL 15 in DIR, so that
# several checkouts (git worktrees) can be built and tested on one machine without touching the
# shared installation or each other (the same technique as scripts/sanitize.sh, without the
# sanitizers). Prints the bin/ directory to use:
#
#   bin=$(bash scripts/private_install.sh /tmp/pg_mine)
#   PG_BIN=$bin bash test/070_delivery.sh                    # integration tests
#   REGRESS_BINDIR=$bin SKIP_SETUP=1 bash scripts/test.sh regress   # pg_regress, isolation
#
# Run it again after every change (it rebuilds and reinstalls; the copy of PostgreSQL is kept).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || exec sudo -E bash "$0" "$@"
dir=${1:?usage: scripts/private_install.sh DIR}
PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
real_bin=$($PG_CONFIG --bindir)
real_lib=$($PG_CONFIG --pkglibdir)
real_share=$($PG_CONFIG --sharedir)
stage=$dir/stage
mkdir -p "$dir"
chmod 755 "$dir"
make -s -j"$(nproc)" WERROR=1 with_llvm=no PG_CONFIG=$PG_CONFIG >/dev/null
# The extension's files first (real files), then everything else as symlinks (-n keeps ours).
rm -f "$stage$real_lib/pg_sync.so" "$stage$real_share/extension"/pg_sync*
make -s install DESTDIR="$stage" with_llvm=no PG_CONFIG=$PG_CONFIG >/dev/null
if [ ! -x "$stage$real_bin/postgres" ]; then
    mkdir -p "$stage$real_bin"
    cp -a "$real_bin/." "$stage$real_bin/" # real copies: postgres finds lib/ and share/ from its path
fi
cp -rsn "$real_lib/." "$stage$real_lib/"
cp -rsn "$real_share/." "$stage$real_share/"
# No SQL script of pg_sync from the shared installation: only this build's (the update scripts
# differ between versions; a stale one could offer an update path this build does not have).
find "$stage$real_share/extension" -maxdepth 1 -name 'pg_sync*' -type l -delete
# Nor its JIT bitcode (this build has none, with_llvm=no): the system's, of another build, or
# none at all while scripts/package_check.sh swaps the system's files, must not be inlined.
rm -rf "$stage$real_lib/bitcode/pg_sync" "$stage$real_lib/bitcode/pg_sync.index.bc"
[ "$("$stage$real_bin/pg_config" --pkglibdir)" = "$stage$real_lib" ] ||
    { echo "private_install: PostgreSQL is not relocatable here" >&2; exit 1; }
echo "$stage$real_bin"
