"""``stream-orch audit``: who started, stopped, restarted, replayed or ingested what, and when."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from stream_orch.cli.argtypes import past_time_ms
from stream_orch.settings import Settings


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "audit",
        help="print the audit trail (worker starts and stops, node restarts, DLQ replays, ingest runs)",
        description="Reads the audit topic (STREAM_ORCH_AUDIT_TOPIC, default stream_orch.audit) from "
        "--since on, oldest first. Events name the topology, its version and content hash, host, "
        "user and pid; they never carry record keys or values.",
    )
    p.add_argument("--topology", metavar="T", help="only events of this topology")
    p.add_argument(
        "--since",
        type=past_time_ms,
        metavar="1h|ISO",
        help="only events from this time on: a duration back from now (30m, 1h, 2d) or an ISO time "
        "(UTC unless it says otherwise); default: all",
    )
    p.add_argument("--action", metavar="A", help="only this action (e.g. worker_start, dlq_replay)")
    p.add_argument(
        "--format", choices=("table", "json"), default="table", help="table (default) or JSON lines"
    )
    p.set_defaults(func=_audit)


async def _audit(args: argparse.Namespace, settings: Settings) -> int:
    from stream_orch.audit.read import read_events, render_json_lines, render_table

    found = await read_events(settings, since_ms=args.since, topology=args.topology, action=args.action)
    if not found.topic_exists:
        print(f"no audit trail yet: topic {settings.audit_topic} does not exist", file=sys.stderr)
        return 0
    if args.format == "json":
        sys.stdout.write(render_json_lines(found.events))
    else:
        print(render_table(found.events))
    if found.unreadable:
        print(
            f"{found.unreadable} records of {settings.audit_topic} are not audit events (skipped)",
            file=sys.stderr,
        )
    return 0
