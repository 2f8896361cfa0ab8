"""``stream-orch generate fraud|reconciliation``: publish test data whose outcome is known: profiles
and transactions with fraud patterns, or payments and settlements with reconciliation fates."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from stream_orch.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("generate", help="publish generated test data")
    p.add_argument("kind", choices=["fraud", "reconciliation"], help="data set")
    p.add_argument("--customers", type=int, default=200, help="customer profiles (default 200)")
    p.add_argument("--transactions", type=int, default=5000, help="transactions (default 5000)")
    p.add_argument("--rate", type=float, default=0.0, help="records per second (0: as fast as possible)")
    p.add_argument("--seed", type=int, default=7, help="same seed, same records")
    p.add_argument("--start-ms", type=int, default=None, help="event time of the first record (default: now)")
    p.add_argument("--customers-topic", default="customers")
    p.add_argument("--transactions-topic", default="transactions")
    p.add_argument("--payments", type=int, default=5000, help="reconciliation: payments (default 5000)")
    p.add_argument("--minutes", type=float, default=120.0, help="reconciliation: event time spanned")
    p.add_argument("--payments-topic", default="payments")
    p.add_argument("--settlements-topic", default="settlements")
    p.add_argument("--truth", type=Path, help="reconciliation: write the expected outcome per payment here")
    p.add_argument("--partitions", type=int, default=6, help="partitions of topics this creates")
    p.add_argument("--dry-run", action="store_true", help="print the records as JSON lines instead")
    p.set_defaults(func=_generate)


async def _generate(args: argparse.Namespace, settings: Settings) -> int:
    from stream_orch.errors import UserError
    from stream_orch.runtime.admin import ensure_topics
    from stream_orch.runtime.output import BatchSender, PartitionMap
    from stream_orch.transport.connect import start_producer, unreachable

    if args.customers < 1 or args.transactions < 0 or args.rate < 0 or args.payments < 0:
        raise UserError("--customers must be >= 1, --transactions, --payments and --rate >= 0")
    records, plans, summary = _fraud(args) if args.kind == "fraud" else _reconciliation(args)
    if args.dry_run:
        out = sys.stdout.buffer
        for r in records:
            out.write(
                orjson.dumps(
                    {
                        "topic": r.topic,
                        "key": r.key.decode() if r.key else None,
                        "value": r.value.decode("utf-8", "replace"),
                    }
                )
                + b"\n"
            )
        return 0
    try:
        counts = await asyncio.wait_for(
            ensure_topics(settings.kafka_client_args(), plans), settings.request_timeout_s
        )
    except (TimeoutError, OSError) as exc:
        raise unreachable(settings, type(exc).__name__) from None
    producer = await start_producer(settings)
    sender = BatchSender(producer, PartitionMap(dict(counts)))
    started = time.monotonic()
    try:
        chunk = max(1, int(args.rate // 10)) if args.rate else 5000
        for i in range(0, len(records), chunk):
            for r in records[i : i + chunk]:
                sender.add(r.topic, r.key, r.value)
            await sender.flush()
            if args.rate:
                ahead = (i + chunk) / args.rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
    finally:
        await producer.stop()
    elapsed = time.monotonic() - started
    summary["records"] = len(records)
    summary["seconds"] = round(elapsed, 2)
    summary["records_per_second"] = round(len(records) / elapsed) if elapsed else None
    print(orjson.dumps(summary).decode())
    return 0


def _fraud(args: argparse.Namespace) -> tuple[list[Any], list[Any], dict[str, Any]]:
    from stream_orch.runtime.admin import TopicPlan
    from stream_orch.tools.generate import generate_fraud

    records, plan = generate_fraud(
        args.customers,
        args.transactions,
        seed=args.seed,
        start_ms=args.start_ms,
        customers_topic=args.customers_topic,
        transactions_topic=args.transactions_topic,
    )
    plans = [
        TopicPlan(args.customers_topic, args.partitions, compact=True),
        TopicPlan(args.transactions_topic, args.partitions),
    ]
    summary = {
        "customers": plan.customers,
        "transactions": plan.transactions,
        "patterns": dict(plan.patterns),
    }
    return records, plans, summary


def _reconciliation(args: argparse.Namespace) -> tuple[list[Any], list[Any], dict[str, Any]]:
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
    if args.truth:
        truth = {"outcome": plan.outcome, "severity": plan.severity}
        args.truth.write_bytes(orjson.dumps(truth, option=orjson.OPT_INDENT_2))
    plans = [
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
    return records, plans, summary
