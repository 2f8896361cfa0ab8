#!/usr/bin/env bash
# Body of `make demo` (the broker is already up): the fraud topology end to end.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python scripts/demo.py
