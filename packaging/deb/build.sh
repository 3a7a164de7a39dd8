#!/bin/bash
# Builds dist/ossfs_<version>_<arch>.deb from this source tree on Debian 12 with dpkg-deb.
# Run as root: missing build dependencies are installed with apt-get.
#
# ossfs runs on Debian's /usr/bin/python3 with Debian's libraries where Debian has them
# (see Depends below); the rest (packaging/common/vendor.txt: oss2 and the Aliyun SDK
# core, mfusepy, pycryptodome) is installed from PyPI with pip --target into the package's
# private /usr/lib/ossfs/site-packages.  pycryptodome carries compiled code, so the
# package is built for this machine's architecture.
set -euo pipefail
TREE=$(cd "$(dirname "$0")/../.." && pwd)
cd "$TREE"

RUNTIME_DEPS=(python3 fuse3 libfuse3-3 python3-requests python3-urllib3 python3-six python3-crcmod
              python3-diskcache python3-xattr python3-configargparse python3-cryptography
              python3-jmespath)
BUILD_DEPS=(dpkg-dev binutils python3-pip python3-setuptools python3-wheel "${RUNTIME_DEPS[@]}")
missing=()
for p in "${BUILD_DEPS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "ossfs deb: installing build dependencies: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq -o DPkg::Lock::Timeout=300
    apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends "${missing[@]}" >/dev/null
fi

PYVERSION=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' ossfs/__init__.py)
# Python pre-releases (1.0rc1, 1.0.dev2) sort before the release in Debian with "~".
VERSION=$(echo "$PYVERSION" | sed -E 's/\.?(a|b|rc|dev)([0-9]*)$/~\1\2/')
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
    SOURCE_DATE_EPOCH=$(git -C "$TREE" log -1 --format=%ct 2>/dev/null || date +%s)
fi
export SOURCE_DATE_EPOCH

WORK=$(mktemp -d /tmp/ossfs-deb.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
ROOT="$WORK/root"
bash packaging/common/vendor.sh "$WORK/vendor" /usr/bin/python3
PYTHON=/usr/bin/python3 bash packaging/common/stage.sh "$TREE" "$ROOT" "$WORK/vendor" /sbin /usr/share/doc/ossfs

DOC="$ROOT/usr/share/doc/ossfs"
install -m 644 packaging/deb/README.Debian packaging/deb/copyright "$DOC/"
sed "s/@VERSION@/$VERSION/; s/@DATE@/$(date -u -R -d "@$SOURCE_DATE_EPOCH")/" packaging/deb/changelog \
    | gzip -9n > "$DOC/changelog.gz"

if find "$ROOT/usr/lib/ossfs" -name '*.so' | grep -q .; then
    ARCH=$(dpkg --print-architecture)
else
    ARCH=all
fi
install -d -m 755 "$ROOT/DEBIAN"
for s in postinst prerm postrm; do
    install -m 755 "packaging/deb/$s" "$ROOT/DEBIAN/$s"
done
SIZE=$(du -sk --exclude=DEBIAN "$ROOT" | cut -f1)
DEPENDS="python3 (>= 3.9), fuse3, libfuse3-3, libc6 (>= 2.17), python3-requests, python3-urllib3, python3-six, python3-crcmod, python3-diskcache, python3-xattr, python3-configargparse, python3-cryptography, python3-jmespath"
sed -e "s/@VERSION@/$VERSION/" -e "s/@ARCH@/$ARCH/" -e "s/@SIZE@/$SIZE/" -e "s/@DEPENDS@/$DEPENDS/" \
    packaging/deb/control > "$ROOT/DEBIAN/control"
(cd "$ROOT" && find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\./||' | LC_ALL=C sort \
    | xargs -d '\n' md5sum > DEBIAN/md5sums)
find "$ROOT" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

mkdir -p dist
OUT="dist/ossfs_${VERSION}_${ARCH}.deb"
dpkg-deb --root-owner-group -Zxz --build "$ROOT" "$OUT" >/dev/null
echo "$OUT"
