"""``stream-orch lag``: consumer lag (records and seconds) and status of any group in the cluster.

Once, ``--watch`` (re-print every N seconds; status needs a few polls to build its window), or
``--exporter`` (serve the same as Prometheus metrics on ``--port``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import sys
import time
from collections.abc import Sequence
from typing import Any

from stream_orch.cli.argtypes import port_number
from stream_orch.errors import UserError
from stream_orch.observability.collectors import PartitionLag
from stream_orch.observability.http import serve
from stream_orch.observability.lag import LagCollector, LagReader
from stream_orch.observability.metrics import Metrics
from stream_orch.observability.status import StatusEvaluator
from stream_orch.settings import Settings

HEADERS = ("GROUP", "TOPIC", "PARTITION", "COMMITTED", "END", "LAG", "LAG(s)", "STATUS")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "lag",
        help="consumer lag in records and seconds, with Burrow-style status, for any group",
        description="Lag of consumer groups: log end - committed offset, and seconds since the oldest "
        "unprocessed record was written. Status (ok/warn/stall/stop/rewind) needs at least two "
        "observed commits, so it shows '-' on a single run; use --watch or --exporter.",
    )
    parser.add_argument("--group", "-g", action="append", metavar="G", help="only this group (repeatable)")
    parser.add_argument(
        "--watch", nargs="?", const="5", default=None, metavar="SECONDS", help="re-print every SECONDS (5)"
    )
    parser.add_argument(
        "--exporter", action="store_true", help="serve Prometheus metrics instead of printing"
    )
    parser.add_argument("--port", default=None, metavar="P", help="exporter port (default: --metrics-port)")
    parser.add_argument(
        "--host", default=None, help="exporter bind address (default: --metrics-host, 127.0.0.1)"
    )
    parser.add_argument("--interval", default="10", metavar="SECONDS", help="exporter poll interval (10)")
    parser.add_argument("--window", default="10", metavar="N", help="commits per status window (10)")
    parser.add_argument(
        "--min-stop",
        default="30",
        metavar="SECONDS",
        help="status stop only once the last commit is at least this old (30)",
    )
    parser.add_argument(
        "--no-partition-labels", action="store_true", help="exporter: aggregate per topic (fewer series)"
    )
    parser.set_defaults(func=run)


def _positive(value: str, flag: str, integer: bool = False) -> float:
    try:
        number = int(value) if integer else float(value)
    except ValueError:
        raise UserError(f"{flag} must be a {'whole ' if integer else ''}number, got {value!r}") from None
    if not number > 0 or math.isinf(number):
        raise UserError(f"{flag} must be greater than 0, got {value!r}")
    return number




def format_table(rows: Sequence[PartitionLag]) -> str:
    """Aligned text table; numbers right-aligned, '-' for unknown lag seconds or status."""
    body = [
        (
            r.group,
            r.topic,
            str(r.partition),
            str(r.committed),
            str(r.end),
            str(r.lag_records),
            "-" if math.isnan(r.lag_seconds) else f"{r.lag_seconds:.1f}",
            r.status.label if r.status is not None else "-",
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(row[i]) for row in body)) if body else len(h) for i, h in enumerate(HEADERS)]
    right = {2, 3, 4, 5, 6}

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(HEADERS), *(line(row) for row in body)])


async def run(args: argparse.Namespace, settings: Settings) -> int:
    watch = _positive(args.watch, "--watch") if args.watch is not None else None
    interval = _positive(args.interval, "--interval")
    window = int(_positive(args.window, "--window", integer=True))
    min_stop = _positive(args.min_stop, "--min-stop")
    if window < 2:
        raise UserError("--window must be at least 2 commits")
    if args.exporter and watch is not None:
        raise UserError("--watch and --exporter cannot be combined (the exporter polls every --interval)")
    if not args.exporter and args.port is not None:
        raise UserError("--port only applies with --exporter")
    port = port_number(args.port if args.port is not None else settings.metrics_port)
    groups = list(dict.fromkeys(args.group)) if args.group else None

    async with LagReader(settings) as reader:
        if groups:
            known = set(await reader.groups())
            unknown = [g for g in groups if g not in known]
            if unknown:
                raise UserError(f"no such consumer group: {', '.join(unknown)}", exit_code=3)
        evaluator = StatusEvaluator(window=window, min_stop_seconds=min_stop)
        if args.exporter:
            return await _export(
                reader,
                evaluator,
                groups,
                interval,
                args.host or settings.metrics_host,
                port,
                not args.no_partition_labels,
            )
        collector = LagCollector(reader, groups=groups, evaluator=evaluator)
        while True:
            rows = await collector.poll_once()
            text = format_table(rows) if rows else "no committed offsets"
            if watch is None:
                print(text)
                return 0
            if sys.stdout.isatty():
                print("\x1b[H\x1b[2J", end="")
            print(f"{time.strftime('%H:%M:%S')}  every {watch:g}s, Ctrl-C to stop")
            print(text, flush=True)
            await asyncio.sleep(watch)


async def _export(
    reader: LagReader,
    evaluator: StatusEvaluator,
    groups: list[str] | None,
    interval: float,
    host: str,
    port: int,
    per_partition: bool,
) -> int:
    metrics = Metrics(per_partition=per_partition)
    collector = LagCollector(reader, metrics, groups=groups, interval_s=interval, evaluator=evaluator)
    await collector.poll_once()  # fail fast (and serve real numbers from the first scrape)
    server = await serve(metrics, None, host, port)
    print(f"lag exporter on {server.url}/metrics, polling every {interval:g}s", flush=True)
    try:
        await collector.run()
    finally:
        with contextlib.suppress(Exception):
            await server.stop()
    return 0
