#!/bin/bash
# Installs everything ossfs and its test suite need on a fresh Debian 12 machine (run as root).
# Idempotent: a second run installs nothing new.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(fuse3 libfuse3-3 s3fs rclone attr rsync psmisc procps strace util-linux python3-venv)
missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "ossfs setup: installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# FUSE needs its device node and, for allow_other, user_allow_other.
[ -e /dev/fuse ] || mknod -m 0666 /dev/fuse c 10 229
grep -qs '^user_allow_other' /etc/fuse.conf || echo 'user_allow_other' >> /etc/fuse.conf

PY=${PYTHON:-python3}
"$PY" -m pip install -q --disable-pip-version-check -e ".[test]"
