#!/usr/bin/env bash
# The Debian package, end to end (scripts/test.sh package; CI runs it last): builds
# postgresql-15-pg-sync from debian/ with `dpkg-buildpackage -us -uc -b` in a copy of the tree
# under /tmp (no build product is left in the checkout), installs the .deb, starts a throwaway
# server from the system binaries (/usr/lib/postgresql/15/bin) with the settings of
# test/regress.conf, checks that it runs the package's pg_sync.so, runs the regression and
# isolation suites with `make installcheck` against it (from a copy of the Makefile and test/
# only: no build tree), stops the server and removes the package.
#
# The package owns pg_sync's files in the system directories, where scripts/setup.sh's
# `make install` put files of its own: those are moved aside before the package is installed and
# put back after it is removed (even on failure), so that the other layers and later runs find
# what they found before. Servers of private installs (scripts/private_install.sh,
# scripts/sanitize.sh) load their own pg_sync files, never the system's.
#
#   PACKAGE_KEEP=1     keep the work directory (the build, its log and the .deb) even on success
#   PACKAGE_DEB=FILE   test this .deb (absolute path; of this tree's version) instead of building one
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/platform.sh && require_platform
[ "$(id -u)" -eq 0 ] || exec sudo -E bash "$0" "$@"
export PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
version=$(sed -n 's/^EXTVERSION *= *//p' Makefile)
package=postgresql-15-pg-sync
start=$SECONDS

if dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed"; then
    echo "package: $package is installed on this machine; this check installs and removes it:" >&2
    echo "remove it first (dpkg --purge $package)" >&2
    exit 1
fi

# --- Build dependencies (debian/control's Build-Depends, and what dpkg-buildpackage needs) -------
needed=(build-essential dpkg-dev fakeroot debhelper postgresql-server-dev-all)
missing=()
for p in "${needed[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ] || ! dpkg-checkbuilddeps >/dev/null 2>&1; then
    echo "package: installing the build dependencies ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${needed[@]}" >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get build-dep -y -qq "$PWD" >/dev/null
fi

# --- Build, in a copy of the tree ----------------------------------------------------------------
work=$(mktemp -d /tmp/pg_sync_package.XXXXXX)
chmod 755 "$work"
if [ -n "${PACKAGE_DEB:-}" ]; then
    deb=$PACKAGE_DEB
else
    src=$work/pg-sync-$version
    mkdir "$src"
    # The sources only: what git tracks (and new files it does not ignore); without git,
    # everything but the build products of the checkout (make clean removes those of PGXS).
    if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        git ls-files -z --cached --others --exclude-standard | tar -cf - --null -T - | tar -xf - -C "$src"
    else
        tar -cf - --exclude-vcs --exclude=./build --exclude=./build-asan --exclude=./log . | tar -xf - -C "$src"
        make -s -C "$src" clean PG_CONFIG=$PG_CONFIG >/dev/null
    fi
    echo "package: building $package $version in $work (dpkg-buildpackage -us -uc -b)"
    t0=$SECONDS
    if ! (cd "$src" && dpkg-buildpackage -us -uc -b -j"$(nproc)") >"$work/build.log" 2>&1; then
        tail -n 40 "$work/build.log"
        echo "package: the build failed; log and tree kept in $work"
        exit 1
    fi
    deb=$(ls "$work/${package}_${version}"-*_*.deb)
    echo "package: built $(basename "$deb") in $((SECONDS - t0))s"
fi

# --- Install, after moving aside what scripts/setup.sh's make install put there -------------------
files=$(dpkg-deb --fsys-tarfile "$deb" | tar -tf - | sed -n 's|^\./\(.*[^/]\)$|/\1|p')
pkglib=$($PG_CONFIG --pkglibdir)
extdir=$($PG_CONFIG --sharedir)/extension
aside=$work/system_before
installed=""
# The system's binaries (test/lib/pg.sh's default), whatever the caller's environment says.
PG_BIN=$($PG_CONFIG --bindir)
unset REGRESS_BINDIR
. test/lib/pg.sh

restore() {
    local rc=$?
    pg_stop || true
    if [ -n "$installed" ]; then
        dpkg --purge "$package" >"$work/purge.log" 2>&1 ||
            { cat "$work/purge.log"; echo "package: dpkg --purge $package failed"; rc=1; }
    fi
    # Put back what was there before, atomically per file (running servers keep their mapping).
    if [ -d "$aside" ]; then
        (cd "$aside" && find . -type f) | while read -r f; do
            mkdir -p "$(dirname "/${f#./}")"
            cp -a "$aside/${f#./}" "/${f#./}.pg_sync_restore" && mv -f "/${f#./}.pg_sync_restore" "/${f#./}"
        done
    fi
    if [ $rc -eq 0 ] && [ -z "${PACKAGE_KEEP:-}" ]; then
        rm -rf "$work"
    else
        echo "package: work directory kept: $work"
    fi
    exit $rc
}
trap restore EXIT

mkdir "$aside"
# pg_sync's files in the system directories: the package's, and any other version's.
{
    echo "$files"
    find "$pkglib" "$extdir" -maxdepth 1 -name 'pg_sync*'
    find "$pkglib/bitcode" -maxdepth 1 -name 'pg_sync*' 2>/dev/null
} | sort -u | while read -r f; do
    [ -e "$f" ] || continue
    mkdir -p "$aside$(dirname "$f")"
    mv "$f" "$aside$f"
done
installed=1
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$deb" >"$work/install.log" 2>&1 ||
    { cat "$work/install.log"; exit 1; }
# Every installed file is the package's (its md5sums): dpkg --verify lists those that are not.
changed=$(dpkg --verify "$package") || true
[ -z "$changed" ] || { echo "package: installed files differ from the package's:"; echo "$changed"; exit 1; }
echo "package: installed $package $(dpkg-query -W -f='${Version}' "$package")"

# --- A server from the system binaries, loading the package's library ----------------------------
# shared_preload_libraries and the other settings the suites need: test/regress.conf (README,
# "Against an existing server").
pg_start package "$(cat test/regress.conf)"
so=$(grep -o '/[^ ]*pg_sync\.so$' "/proc/$PG_PID/maps" | sort -u)
[ "$so" = "$pkglib/pg_sync.so" ] || { echo "package: the server loaded '$so', not $pkglib/pg_sync.so"; exit 1; }
owner=$(dpkg -S "$so" | cut -d: -f1)
[ "$owner" = "$package" ] || { echo "package: $so belongs to '$owner', not $package"; exit 1; }
[ "$(q -c "SELECT default_version FROM pg_available_extensions WHERE name = 'pg_sync'")" = "$version" ] ||
    { echo "package: the server does not offer pg_sync $version"; exit 1; }
echo "package: server PID $PG_PID on port $PGPORT runs $so (from $package)"

# --- make installcheck against it: scripts/test.sh's regress layer in installcheck mode ----------
INSTALLCHECK_TARGET=installcheck SKIP_SETUP=1 bash scripts/test.sh regress
echo "package: build, install and installcheck took $((SECONDS - start))s"
