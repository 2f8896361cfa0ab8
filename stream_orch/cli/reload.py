"""``stream-orch reload PID [--to-version V]``: make a running worker re-read its topology (or
go back to a version it ran) without a restart; prints the worker's one-line answer."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
import uuid

from stream_orch.cli.argtypes import positive_float, positive_int
from stream_orch.errors import UserError
from stream_orch.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "reload",
        help="reload a running worker's topology, or roll it back (--to-version)",
        description="Sends SIGHUP to a worker started by `stream-orch run`. It re-reads its topology "
        "file (or, with --to-version, the copy it kept of a version it ran), checks it like `validate`, "
        "and applies it at its next batch boundary when only constants, score rules, filter conditions, "
        "derive expressions, route conditions or `set` values changed; anything else is refused and "
        "the worker keeps its version. Exit 0 when applied (or already running), 1 when refused.",
    )
    p.add_argument("pid", type=positive_int, help="process id of the worker")
    p.add_argument("--to-version", metavar="V", help="apply the kept copy of version V (a rollback)")
    p.add_argument("--timeout", type=positive_float, default=150.0, help="seconds to wait for the answer")
    p.set_defaults(func=_reload)


def _reload(args: argparse.Namespace, settings: Settings) -> int:
    from stream_orch.runtime import control

    about = control.registered(args.pid)
    if about is None:
        raise UserError(f"process {args.pid} is not a running worker started by `stream-orch run`")
    request_id = uuid.uuid4().hex
    control.request(args.pid, request_id, args.to_version)
    try:
        os.kill(args.pid, signal.SIGHUP)
    except OSError as exc:
        raise UserError(f"cannot signal process {args.pid}: {exc.strerror or exc}") from None
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        answer = control.result(args.pid, request_id)
        if answer is not None:
            return _print(args.pid, answer)
        time.sleep(0.1)
    raise UserError(f"worker {args.pid} ({about.get('topology')}) gave no answer within {args.timeout:.0f}s")


def _print(pid: int, answer: dict) -> int:
    version, content_hash = answer.get("version"), answer.get("content_hash")
    if answer.get("result") == "refused":
        print(f"refused: {answer.get('reason')}; worker {pid} keeps version {version}", file=sys.stderr)
        return 1
    if answer.get("result") == "unchanged":
        print(f"worker {pid} already runs version {version} ({content_hash})")
    else:
        print(f"worker {pid} runs version {version} ({content_hash}) from its next batch")
    return 0
