#!/bin/bash
# stage.sh TREE DESTDIR VENDORDIR SBINDIR DOCDIR
# Lays out the installed ossfs under DESTDIR, the same way for the .deb and the .rpm:
#   /usr/lib/ossfs/site-packages   ossfs itself + the vendored libraries (private; the
#                                  launchers put it first on sys.path)
#   /usr/bin/ossfs, /usr/bin/ossfs-server     launchers for /usr/bin/python3
#   SBINDIR/mount.fuse.ossfs       the mount(8) helper for type fuse.ossfs
#   /usr/share/man/man1/ossfs.1.gz, ossfs-server.1.gz, man8/mount.fuse.ossfs.8.gz
#   DOCDIR/                        passwd-ossfs.example, fstab and systemd examples
# The man pages are made by running the staged tree with $PYTHON (default /usr/bin/python3).
set -euo pipefail
TREE=$(cd "$1" && pwd)
DEST=$2
VENDOR=$3
SBINDIR=$4
DOCDIR=$5
PY=${PYTHON:-/usr/bin/python3}
PKG="$TREE/packaging"
SITE="$DEST/usr/lib/ossfs/site-packages"
VERSION=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$TREE/ossfs/__init__.py")
[ -n "$VERSION" ] || { echo "stage: no __version__ in $TREE/ossfs/__init__.py" >&2; exit 1; }

install -d -m 755 "$SITE" "$DEST/usr/bin" "$DEST$SBINDIR" "$DEST/usr/share/man/man1" \
    "$DEST/usr/share/man/man8" "$DEST$DOCDIR"
cp -a "$VENDOR/." "$SITE/"
# Compiled modules of the vendored wheels carry debugging symbols nobody uses.
find "$SITE" -name '*.so' -exec strip --strip-unneeded {} +
(cd "$TREE" && find ossfs -name __pycache__ -prune -o -name '*.py' -print | while read -r f; do
    install -D -m 644 "$f" "$SITE/$f"
done)
# Lets importlib.metadata report the version of ossfs, as it does for the vendored libraries.
install -d "$SITE/ossfs-$VERSION.dist-info"
printf 'Metadata-Version: 2.1\nName: ossfs\nVersion: %s\n' "$VERSION" > "$SITE/ossfs-$VERSION.dist-info/METADATA"
printf 'ossfs-package\n' > "$SITE/ossfs-$VERSION.dist-info/INSTALLER"

install -m 755 "$PKG/bin/ossfs" "$PKG/bin/ossfs-server" "$DEST/usr/bin/"
install -m 755 "$PKG/mount.fuse.ossfs" "$DEST$SBINDIR/mount.fuse.ossfs"

export PYTHONPATH="$SITE"
"$PY" "$PKG/common/make_man.py" "$SITE" > "$DEST/usr/share/man/man1/ossfs.1"
"$PY" "$PKG/common/make_man.py" --server "$SITE" > "$DEST/usr/share/man/man1/ossfs-server.1"
install -m 644 "$PKG/man/mount.fuse.ossfs.8" "$DEST/usr/share/man/man8/"
gzip -9nf "$DEST/usr/share/man/man1/ossfs.1" "$DEST/usr/share/man/man1/ossfs-server.1" \
    "$DEST/usr/share/man/man8/mount.fuse.ossfs.8"
# A smoke test of the staged tree with the distribution's Python and libraries.
"$PY" -s -c 'import ossfs.cli, ossfs.server.__main__, oss2, Crypto.Cipher.AES' \
    || { echo "stage: the staged ossfs does not import with $PY" >&2; exit 1; }

install -m 644 "$PKG/doc/passwd-ossfs.example" "$PKG/doc/fstab.example" \
    "$PKG/systemd/mnt-oss.mount" "$PKG/systemd/mnt-oss.automount" "$DEST$DOCDIR/"
find "$SITE" -name __pycache__ -type d -prune -exec rm -rf {} +
chmod -R u=rwX,go=rX "$DEST/usr/lib/ossfs" "$DEST$DOCDIR"
