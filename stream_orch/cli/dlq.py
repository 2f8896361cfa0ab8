"""``stream-orch dlq inspect|replay TOPIC``: look at dead letters and send them back, once."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any

import orjson

from stream_orch.cli.argtypes import positive_int
from stream_orch.errors import UserError
from stream_orch.settings import Settings


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "dlq",
        help="inspect and replay dead-letter topics",
        description="Dead letters keep the original key and value bytes and carry so.error.* headers.",
    )
    sub = parser.add_subparsers(dest="dlq_command", metavar="ACTION")

    p = sub.add_parser(
        "inspect", help="summary by reason, node, original topic and time; --records for the records"
    )
    p.add_argument("topic", help="dead-letter topic")
    p.add_argument("-n", "--max", type=positive_int, help="read at most N dead letters")
    p.add_argument("--records", action="store_true", help="also print each record as a JSON line")
    p.set_defaults(func=_inspect)

    p = sub.add_parser(
        "replay",
        help="re-publish dead letters to their original topic (or another), each at most once",
        description="Replayed records keep key, value bytes, timestamp and non-engine headers, and get "
        "so.replay.from and so.replay.id. --to original sends a dead letter back to its so.error.topic "
        "only if that is an input or retry topic of the nodes that dead-letter into TOPIC (--topology), "
        "or, without --topology, the INPUT of a DLQ named INPUT.dlq; others are skipped and counted. "
        "Before writing, one line per target topic says how many go there. The DLQ is streamed in "
        "chunks; each chunk is one transaction with its records in the ledger topic "
        "stream-orch-replay.<topic> (or .<group>), so a second run, even after a kill -9, publishes "
        "nothing twice.",
    )
    p.add_argument("topic", help="dead-letter topic")
    p.add_argument(
        "--filter",
        dest="filter_expr",
        metavar="EXPR",
        help="expression over reason, node, error_class, topic, partition, offset, attempts, key, value "
        "(e.g. \"reason == 'unknown_customer' and attempts >= 4\")",
    )
    p.add_argument(
        "--to",
        default="original",
        metavar="original|TOPIC",
        help="target (default: original, one of the DLQ's origin topics)",
    )
    p.add_argument(
        "--topology",
        type=Path,
        metavar="FILE",
        help="the topology whose nodes write TOPIC: --to original may write to their input, retry "
        "and joined topics (default: INPUT for a DLQ named INPUT.dlq)",
    )
    p.add_argument("--dry-run", action="store_true", help="print what would be published; write nothing")
    p.add_argument("--group", metavar="G", help="ledger name (default: the DLQ topic): stream-orch-replay.G")
    p.add_argument(
        "--chunk-size",
        type=positive_int,
        metavar="N",
        help="dead letters per transaction, committed with their ledger records (default 2000): "
        "a killed run leaves at most one chunk to redo, and the next run publishes none of it twice",
    )
    p.set_defaults(func=_replay)
    parser.set_defaults(func=_missing_action(parser))


def _missing_action(parser: argparse.ArgumentParser) -> Any:
    def fail(args: argparse.Namespace, settings: Settings) -> int:
        raise UserError("dlq: say what to do: `stream-orch dlq inspect TOPIC` or `... dlq replay TOPIC`")

    return fail


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(orjson.dumps(obj).decode() + "\n")


async def _inspect(args: argparse.Namespace, settings: Settings) -> int:
    from stream_orch.reliability.dlq import inspect

    summary = await inspect(settings, args.topic, max_records=args.max)
    if args.records:  # JSON lines on stdout, the summary on stderr
        for record in summary.shown:
            _emit(record)
    print(summary.render(), file=sys.stderr if args.records else sys.stdout)
    return 0


async def _replay(args: argparse.Namespace, settings: Settings) -> int:
    from stream_orch.audit import NOBODY, Auditor, AuditSubject, audit_log
    from stream_orch.audit.events import DLQ_REPLAY
    from stream_orch.reliability.destinations import topology_origins
    from stream_orch.reliability.ledger import ledger_topic
    from stream_orch.reliability.replay import replay
    from stream_orch.topology.loader import load_topology
    from stream_orch.topology.repartition import expand

    if not args.to or args.to.strip() != args.to:
        raise UserError(f"--to: not a topic name: {args.to!r}")
    if args.to == args.topic:
        raise UserError("--to: replaying a dead-letter topic into itself would loop")
    if args.topology is not None and args.to != "original":
        raise UserError("--topology: only for --to original (--to TOPIC names the target itself)")
    origins, subject = None, NOBODY
    if args.topology is not None:
        loaded = load_topology(args.topology)
        origins = topology_origins(expand(loaded.spec), args.topic)
        subject = AuditSubject.of_topology(loaded.spec, args.topology, None)
    out = sys.stderr if args.dry_run else sys.stdout  # with --dry-run, stdout has the records

    def announce(line: str) -> None:
        print(line, file=out, flush=True)

    # A replay is audited (a dry run writes nothing and is not): the audit topic is opened before
    # anything is replayed, so one that cannot be written stops the replay first.
    auditor = Auditor(audit_log(settings, strict=not args.dry_run), subject)
    if not args.dry_run:
        await auditor.start()
    try:
        try:
            result = await replay(
                settings,
                args.topic,
                to=args.to,
                origins=origins,
                filter_expr=args.filter_expr,
                dry_run=args.dry_run,
                group=args.group,
                emit=_emit if args.dry_run else None,
                announce=announce,
                chunk_size=args.chunk_size,
            )
        except Exception as exc:
            if not args.dry_run:  # what a failed run committed stays replayed: audited as well
                with contextlib.suppress(UserError):  # the run's own error is the one to report
                    await auditor.record(
                        DLQ_REPLAY, dlq=args.topic, to=args.to, filter=args.filter_expr,
                        ledger=ledger_topic(args.topic, args.group), outcome="failed",
                        error=str(exc) if isinstance(exc, UserError) else type(exc).__name__,
                    )  # fmt: skip
            raise
        print(result.render(args.dry_run), file=out)
        if not args.dry_run:
            await auditor.record(
                DLQ_REPLAY,
                dlq=args.topic,
                to=args.to,
                filter=args.filter_expr,
                count=result.published,
                targets=dict(result.by_target),
                already=result.already,
                filtered=result.filtered,
                ledger=result.ledger,
                outcome="done",
            )
    finally:
        await auditor.close()
    return 0
