#!/bin/bash
# vendor.sh OUTDIR [PYTHON]: installs the libraries listed in vendor.txt, without their
# dependencies (those come from the distribution), into OUTDIR with pip --target.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=$1
PY=${2:-/usr/bin/python3}
rm -rf "$OUT"
mkdir -p "$OUT"
PIP_ROOT_USER_ACTION=ignore "$PY" -m pip install --quiet --disable-pip-version-check --no-cache-dir --no-deps --no-compile \
    --only-binary=pycryptodome --target "$OUT" -r "$HERE/vendor.txt"
# Not needed at run time: pycryptodome's self tests, console scripts, byte code.
rm -rf "$OUT/Crypto/SelfTest" "$OUT/bin"
find "$OUT" -name __pycache__ -type d -prune -exec rm -rf {} +
