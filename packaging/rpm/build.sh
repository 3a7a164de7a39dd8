#!/bin/bash
# Builds dist/ossfs-<version>-<release>.<arch>.rpm from this source tree with rpmbuild and
# the top-level ossfs.spec.  Works on Debian 12 (run as root: missing build dependencies,
# among them the "rpm" package, are installed with apt-get) and on rpm-based systems that
# already have rpm-build, python3-pip and python3-configargparse.
set -euo pipefail
TREE=$(cd "$(dirname "$0")/../.." && pwd)
cd "$TREE"

if command -v apt-get >/dev/null; then
    BUILD_DEPS=(rpm binutils python3 python3-pip python3-setuptools python3-wheel python3-configargparse
                python3-requests python3-urllib3 python3-six python3-crcmod python3-diskcache
                python3-cryptography python3-jmespath libfuse3-3)
    missing=()
    for p in "${BUILD_DEPS[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "ossfs rpm: installing build dependencies: ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq -o DPkg::Lock::Timeout=300
        apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends "${missing[@]}" >/dev/null
    fi
fi
command -v rpmbuild >/dev/null || { echo "ossfs rpm: rpmbuild is not installed" >&2; exit 1; }

PYVERSION=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' ossfs/__init__.py)
VERSION=$(echo "$PYVERSION" | sed -E 's/\.?(a|b|rc|dev)([0-9]*)$/~\1\2/')
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
    SOURCE_DATE_EPOCH=$(git -C "$TREE" log -1 --format=%ct 2>/dev/null || date +%s)
fi
export SOURCE_DATE_EPOCH

WORK=$(mktemp -d /tmp/ossfs-rpm.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/SOURCES" "$WORK/vendor"
tar -czf "$WORK/SOURCES/ossfs-$VERSION.tar.gz" --exclude=./.git --exclude=./dist --exclude='__pycache__' \
    --exclude='*.egg-info' --exclude=./.pytest_cache --exclude=./.hypothesis -C "$TREE" \
    ./ossfs ./packaging ./ossfs.spec
bash packaging/common/vendor.sh "$WORK/vendor/site" /usr/bin/python3
tar -czf "$WORK/SOURCES/ossfs-vendor-$VERSION.tar.gz" -C "$WORK/vendor/site" .

# --nodeps: the build requirements are Debian packages here, unknown to the rpm database.
rpmbuild -bb --quiet --nodeps \
    --define "_topdir $WORK" --define "ossfs_version $VERSION" \
    --define "use_source_date_epoch_as_buildtime 1" --define "_buildhost ossfs-build" \
    ossfs.spec >"$WORK/rpmbuild.log" 2>&1 || { cat "$WORK/rpmbuild.log" >&2; exit 1; }

mkdir -p dist
RPM=$(find "$WORK/RPMS" -name "ossfs-$VERSION-*.rpm" | head -1)
[ -n "$RPM" ] || { echo "ossfs rpm: rpmbuild made no package" >&2; exit 1; }
cp "$RPM" dist/
echo "dist/$(basename "$RPM")"
