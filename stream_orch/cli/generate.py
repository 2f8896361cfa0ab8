"""``stream-orch generate KIND``: publish test data whose outcome is known.

Each kind is a module (``gen_<kind>.py``) listed once in :data:`KINDS`; this command owns the
arguments they share and the publishing.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import orjson

from stream_orch.cli import gen_fleet, gen_fraud, gen_inventory, gen_reconciliation
from stream_orch.cli.generate_kind import Kind
from stream_orch.settings import Settings

KINDS: dict[str, Kind] = {
    "fleet": gen_fleet.KIND,
    "fraud": gen_fraud.KIND,
    "inventory": gen_inventory.KIND,
    "reconciliation": gen_reconciliation.KIND,
}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("generate", help="publish generated test data")
    p.add_argument(
        "kind",
        choices=sorted(KINDS),
        help="data set: " + "; ".join(f"{name}: {kind.help}" for name, kind in sorted(KINDS.items())),
    )
    p.add_argument("--rate", type=float, default=0.0, help="records per second (0: as fast as possible)")
    p.add_argument("--seed", type=int, default=7, help="same seed, same records")
    p.add_argument("--start-ms", type=int, default=None, help="event time of the first record (default: now)")
    p.add_argument("--partitions", type=int, default=6, help="partitions of topics this creates")
    p.add_argument("--truth", type=Path, help="write the expected outcome here (JSON; kinds that have one)")
    p.add_argument("--dry-run", action="store_true", help="print the records as JSON lines instead")
    for name, kind in sorted(KINDS.items()):
        kind.add_arguments(p.add_argument_group(f"{name}"))
    p.set_defaults(func=_generate)


async def _generate(args: argparse.Namespace, settings: Settings) -> int:
    from stream_orch.errors import UserError
    from stream_orch.runtime.admin import ensure_topics
    from stream_orch.runtime.output import BatchSender, PartitionMap
    from stream_orch.transport.connect import start_producer, unreachable

    kind = KINDS[args.kind]
    for name in ("rate", *kind.non_negative):
        if getattr(args, name) < 0:
            raise UserError(f"--{name.replace('_', '-')} must be >= 0")
    if args.partitions < 1:
        raise UserError("--partitions must be >= 1")
    generated = kind.build(args)
    if args.truth:
        if generated.truth is None:
            raise UserError(f"generate {args.kind} has no ground truth to write (--truth)")
        args.truth.write_bytes(orjson.dumps(generated.truth, option=orjson.OPT_INDENT_2))
    records, plans, summary = generated.records, generated.topics, generated.summary
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
