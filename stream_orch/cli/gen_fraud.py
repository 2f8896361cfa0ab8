"""``stream-orch generate fraud``: customer profiles and transactions with fraud patterns."""

from __future__ import annotations

import argparse

from stream_orch.cli.generate_kind import Generated, Kind


def _arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--customers", type=int, default=200, help="customer profiles (default 200)")
    group.add_argument("--transactions", type=int, default=5000, help="transactions (default 5000)")
    group.add_argument("--customers-topic", default="customers")
    group.add_argument("--transactions-topic", default="transactions")


def _build(args: argparse.Namespace) -> Generated:
    from stream_orch.errors import UserError
    from stream_orch.runtime.admin import TopicPlan
    from stream_orch.tools.generate import generate_fraud

    if args.customers < 1:
        raise UserError("--customers must be >= 1")
    records, plan = generate_fraud(
        args.customers,
        args.transactions,
        seed=args.seed,
        start_ms=args.start_ms,
        customers_topic=args.customers_topic,
        transactions_topic=args.transactions_topic,
    )
    topics = [
        TopicPlan(args.customers_topic, args.partitions, compact=True),
        TopicPlan(args.transactions_topic, args.partitions),
    ]
    summary = {
        "customers": plan.customers,
        "transactions": plan.transactions,
        "patterns": dict(plan.patterns),
    }
    return Generated(records, topics, summary)


KIND = Kind(
    help="profiles and transactions with fraud patterns (topologies/fraud_detection.yaml)",
    add_arguments=_arguments,
    build=_build,
    non_negative=("transactions",),
)
