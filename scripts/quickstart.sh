#!/bin/bash
# Sets up a fresh Debian 12 machine (as root) and runs the main job of ossfs:
# starts the bundled OSS-compatible server on loopback with a demo bucket, mounts
# that bucket with ossfs, shows it working, and says how to unmount.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

DEMO=${OSSFS_DEMO_DIR:-/var/tmp/ossfs-demo}
MNT=${OSSFS_DEMO_MNT:-/mnt/ossfs-demo}
BUCKET=demo-bucket
AKID=demo-access-key
SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(16))')

mkdir -p "$DEMO/data" "$MNT"
if mountpoint -q "$MNT"; then fusermount3 -u "$MNT"; fi
if [ -f "$DEMO/server.pid" ] && kill -0 "$(cat "$DEMO/server.pid")" 2>/dev/null; then
    kill "$(cat "$DEMO/server.pid")"; sleep 1
fi

# The server keeps running after this script: objects live under $DEMO/data.
umask 077
setsid python3 -m ossfs.server --data "$DEMO/data" --host 127.0.0.1 --port 0 \
    --access-key-id "$AKID" --access-key-secret "$SECRET" --bucket "$BUCKET" \
    >"$DEMO/server.log" 2>&1 < /dev/null &
echo $! > "$DEMO/server.pid"
URL=""
for _ in $(seq 1 100); do
    URL=$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$DEMO/server.log" | head -1 || true)
    [ -n "$URL" ] && break
    sleep 0.1
done
[ -n "$URL" ] || { echo "quickstart: ossfs-server did not start; see $DEMO/server.log" >&2; exit 1; }
printf '%s:%s:%s\n' "$BUCKET" "$AKID" "$SECRET" > "$DEMO/passwd-ossfs"
chmod 600 "$DEMO/passwd-ossfs"
umask 022

echo "== ossfs-server listening on $URL (bucket $BUCKET, data in $DEMO/data)"
echo "== mounting: ossfs $BUCKET $MNT -o url=$URL,passwd_file=$DEMO/passwd-ossfs,use_cache=$DEMO/cache"
ossfs "$BUCKET" "$MNT" -o "url=$URL,passwd_file=$DEMO/passwd-ossfs,use_cache=$DEMO/cache"

echo "== writing through the mount"
mkdir -p "$MNT/docs"
echo "hello from ossfs, $(date -u)" > "$MNT/docs/hello.txt"
dd if=/dev/urandom of="$MNT/random.bin" bs=1M count=8 status=none
ln -sf docs/hello.txt "$MNT/hello-link"
chmod 640 "$MNT/docs/hello.txt"
ls -la "$MNT" "$MNT/docs"
cat "$MNT/hello-link"
echo "== the same objects, seen from the server's side"
python3 - "$URL" "$BUCKET" "$AKID" "$SECRET" <<'PY'
import sys, oss2
url, bucket, akid, secret = sys.argv[1:]
b = oss2.Bucket(oss2.Auth(akid, secret), url, bucket)
for o in oss2.ObjectIterator(b):
    h = b.head_object(o.key).headers
    print("%-16s %9d bytes  mode=%s" % (o.key, o.size, h.get("x-oss-meta-mode", "-")))
PY
cat <<MSG

ossfs is mounted on $MNT (bucket $BUCKET on $URL).
  unmount:          fusermount3 -u $MNT      (or: umount $MNT)
  stop the server:  kill \$(cat $DEMO/server.pid)
MSG
