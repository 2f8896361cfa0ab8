"""``stream-orch produce TOPIC``: JSON lines from a file or stdin into a Kafka topic."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any, BinaryIO

from stream_orch.cli.argtypes import positive_float
from stream_orch.errors import UserError
from stream_orch.settings import Settings
from stream_orch.tools.produce import Validator, produce_stream


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "produce",
        help="produce JSON lines from a file or stdin",
        description="Produce one record per JSON line. Bad lines are reported as FILE:LINE and skipped; "
        "the exit code is 1 if any line was rejected or any record failed.",
    )
    parser.add_argument("topic", help="topic to write to")
    parser.add_argument("-f", "--file", default="-", help="JSON-lines file, or - for stdin (default)")
    parser.add_argument("-k", "--key-field", help="take the record key from this field (murmur2-partitioned)")
    parser.add_argument("--rate", type=positive_float, help="at most this many records per second")
    parser.add_argument("--schema", help="validate each record against schemas/NAME.avsc first")
    parser.set_defaults(func=run)


def _schema_validator(name: str) -> Validator:
    from stream_orch.codecs import SchemaError, SchemaRegistry

    try:
        return SchemaRegistry().validator(name)
    except SchemaError as exc:
        raise UserError(str(exc)) from None


async def run(args: argparse.Namespace, settings: Settings) -> int:
    validate = _schema_validator(args.schema) if args.schema else None
    with contextlib.ExitStack() as stack:
        stream: BinaryIO
        if args.file == "-":
            stream, total, source = sys.stdin.buffer, None, "<stdin>"
        else:
            path = Path(args.file)
            try:
                stream = stack.enter_context(path.open("rb"))
            except OSError as exc:
                raise UserError(f"cannot read {path}: {exc.strerror}") from None
            total, source = path.stat().st_size, str(path)
        report = await produce_stream(
            settings, args.topic, stream, source=source, key_field=args.key_field,
            rate=args.rate, validate=validate, total_bytes=total,
        )  # fmt: skip
    for error in report.errors:
        print(f"stream-orch: produce: {error}", file=sys.stderr)
    print(report.summary())
    return 0 if report.ok else 1
