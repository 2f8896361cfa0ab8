"""``stream-orch tail TOPIC``: print records as JSON lines."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from stream_orch.cli.argtypes import positive_float, positive_int
from stream_orch.settings import Settings
from stream_orch.tools.tail import tail


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "tail",
        help="print records of a topic as JSON lines",
        description="One JSON object per record: topic, key, partition, offset, timestamp, headers, value.",
    )
    parser.add_argument("topic", help="topic to read")
    parser.add_argument("--from-beginning", action="store_true", help="start at the earliest offset")
    parser.add_argument("-n", "--max", type=positive_int, help="exit after N records")
    parser.add_argument("-g", "--group", help="consume in this group and commit (default: no group)")
    parser.add_argument("--timeout", type=positive_float, help="exit after S seconds without a record")
    parser.add_argument(
        "--isolation",
        choices=["read_committed", "read_uncommitted"],
        default="read_committed",
        help="read_uncommitted also shows records of open or aborted transactions (default: %(default)s)",
    )
    parser.add_argument(
        "--watermarks",
        action="store_true",
        help="also show the watermark records a node writes to a topic a window reads (no value, "
        'header so.wm.only), marked "watermark": true; they are left out by default',
    )
    parser.set_defaults(func=run)


async def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        await tail(
            settings, args.topic, from_beginning=args.from_beginning, max_records=args.max,
            group=args.group, idle_timeout_s=args.timeout, isolation=args.isolation,
            watermarks=args.watermarks,
        )  # fmt: skip
    except BrokenPipeError:  # `stream-orch tail t | head`: the reader left, which is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0
