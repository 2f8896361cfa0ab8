"""The environment contract between the harness and every contender process.

Each contender is a separate process that learns its topics, consumer group and broker only
from these variables, so the harness can give every run fresh topics and a fresh group, and a
topology file can read the same names through ``${VAR:default}`` interpolation.
"""

from __future__ import annotations

import os

BOOTSTRAP = "BENCH_BOOTSTRAP"  # host:port of the broker (always 127.0.0.1 here)
GROUP = "BENCH_GROUP"  # fresh consumer group (the engine: also its topology name, see ENGINE_TOPOLOGY)
INPUT = "BENCH_INPUT_TOPIC"  # transactions in
CUSTOMERS = "BENCH_CUSTOMERS_TOPIC"  # customer profiles (compacted, key = customer_id)
OUTPUT = "BENCH_OUTPUT_TOPIC"  # forwarding output
ENRICHED = "BENCH_ENRICHED_TOPIC"  # fraud: every valid scored transaction
ALERTS = "BENCH_ALERTS_TOPIC"  # fraud: score >= 0.8
ACTIONS = "BENCH_ACTIONS_TOPIC"  # fraud: freeze commands
REVIEW = "BENCH_REVIEW_TOPIC"  # fraud: 0.5 <= score < 0.8
APPROVED = "BENCH_APPROVED_TOPIC"  # fraud: score < 0.5
DLQ = "BENCH_DLQ_TOPIC"  # fraud: invalid records
STATE_DIR = "BENCH_STATE_DIR"  # scratch directory for local state (Quix RocksDB, Faust data dir)
TOPOLOGY = "BENCH_TOPOLOGY"  # engine: topology name, hence consumer groups and changelog topic names
# the `join` kind (reconciliation): payments are BENCH_INPUT_TOPIC, settlements the second input
SETTLEMENTS = "BENCH_SETTLEMENTS_TOPIC"  # settlements, key payment_id, co-partitioned with payments
RECONCILED = "BENCH_RECONCILED_TOPIC"  # join: matched, same amount and currency
MISMATCH = "BENCH_MISMATCH_TOPIC"  # join: matched, amount or currency differs
UNRECONCILED = "BENCH_UNRECONCILED_TOPIC"  # join: no settlement within the bound

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"

FRAUD_TOPICS = (INPUT, CUSTOMERS, ENRICHED, ALERTS, ACTIONS, REVIEW, APPROVED, DLQ)


def get(name: str, default: str | None = None) -> str:
    """Read a contract variable; a missing one without default is a harness bug, so fail loudly."""
    value = os.environ.get(name, default)
    if value is None:
        raise SystemExit(f"benchmark contender: environment variable {name} is not set")
    return value


def bootstrap() -> str:
    return get(BOOTSTRAP, DEFAULT_BOOTSTRAP)
