#!/usr/bin/env bash
# Body of `make demo` (the broker is already up): round-trip one record through a fresh topic
# with `stream-orch produce` and `stream-orch tail`, then show the broker's status.
# The topology issue replaces this with the fraud demo.
set -euo pipefail

topic="demo.hello.$(date +%s)"
record='{"account_id": "acct-42", "amount": 12.5, "currency": "EUR"}'

echo "==> produce to ${topic}: ${record}"
echo "${record}" | stream-orch produce "${topic}" --key-field account_id

echo "==> tail ${topic}"
stream-orch tail "${topic}" --from-beginning --max 1 --timeout 30

echo "==> broker"
stream-orch kafka status
