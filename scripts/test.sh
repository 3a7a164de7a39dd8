#!/bin/bash
# Installs what the tests need and runs the whole ossfs test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
exec python3 -m pytest -q -p no:cacheprovider --durations=20 tests "$@"
