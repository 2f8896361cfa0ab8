#!/usr/bin/env bash
# Body of `make demo` (the broker is already up): a shipped topology end to end (TOPOLOGY=, default fraud).
set -euo pipefail
cd "$(dirname "$0")/.."
exec python scripts/demo.py
