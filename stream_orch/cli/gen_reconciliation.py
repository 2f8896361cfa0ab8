"""``stream-orch generate reconciliation``: payments and settlements with reconciliation fates."""

from __future__ import annotations

import argparse
from collections import Counter

from stream_orch.cli.generate_kind import Generated, Kind


def _arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--payments", type=int, default=5000, help="payments (default 5000)")
    group.add_argument("--minutes", type=float, default=120.0, help="event time spanned (default 120)")
    group.add_argument("--payments-topic", default="payments")
    group.add_argument("--settlements-topic", default="settlements")


def _build(args: argparse.Namespace) -> Generated:
    from stream_orch.runtime.admin import TopicPlan
    from stream_orch.tools.generate_recon import generate_reconciliation

    records, plan = generate_reconciliation(
        args.payments,
        seed=args.seed,
        start_ms=args.start_ms,
        minutes=args.minutes,
        partitions=args.partitions,
        payments_topic=args.payments_topic,
        settlements_topic=args.settlements_topic,
    )
    topics = [
        TopicPlan(args.payments_topic, args.partitions),
        TopicPlan(args.settlements_topic, args.partitions),
    ]
    summary = {
        "payments": plan.payments,
        "settlements": plan.settlements,
        "expected": plan.counts(),
        "unreconciled_by_severity": dict(sorted(Counter(plan.severity.values()).items())),
        "fates": dict(plan.fates),
    }
    truth = {"outcome": plan.outcome, "severity": plan.severity}
    return Generated(records, topics, summary, truth)


KIND = Kind(
    help="payments and settlements with reconciliation fates (topologies/reconciliation.yaml)",
    add_arguments=_arguments,
    build=_build,
    non_negative=("payments",),
)
