"""``stream-orch console TOPOLOGY... [--port 8090] [--workers URL,...]``: the operations console."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from aiohttp import web

from stream_orch.cli.argtypes import port_number, positive_float, positive_int
from stream_orch.cli.schemas_dir import add_schemas_option, find_schemas_dir
from stream_orch.errors import UserError
from stream_orch.settings import Settings
from stream_orch.topology.loader import SpecError, load_topology


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "console",
        help="web page per topology: its graph with live rates, lag, status and DLQ counts",
        description="Serve the operations console on --host:--port (/console/<topology>). Workers "
        "are read at the --workers URLs (their HTTP port: /metrics); without --workers, at "
        "http://127.0.0.1:<--metrics-port>. Lag is read from the broker as `stream-orch lag` does.",
    )
    parser.add_argument("files", nargs="+", type=Path, metavar="TOPOLOGY", help="topology YAML file(s)")
    parser.add_argument("--port", default="8090", metavar="P", help="console port (8090)")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (127.0.0.1)")
    parser.add_argument(
        "--workers", default=None, metavar="URL,...", help="workers' HTTP base URLs, comma-separated"
    )
    parser.add_argument(
        "--window", default=10, type=positive_int, metavar="N", help="status: polled commits per window (10)"
    )
    parser.add_argument(
        "--min-stop",
        default=30.0,
        type=positive_float,
        metavar="SECONDS",
        help="status STOP only once the last commit is at least this old (30), as in `stream-orch lag`",
    )
    add_schemas_option(parser)  # the schemas say which fields the DLQ page masks
    parser.set_defaults(func=run)


def _workers(value: str | None, settings: Settings) -> list[str]:
    if value is None:
        return [f"http://127.0.0.1:{settings.metrics_port}"]
    urls = [u.strip() for u in value.split(",") if u.strip()]
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise UserError(f"--workers: {url!r} is not an http:// or https:// URL")
    return urls


async def run(args: argparse.Namespace, settings: Settings) -> int:
    from stream_orch.codecs.schemas import SchemaRegistry
    from stream_orch.console.app import make_console_app
    from stream_orch.console.live import Live, Topo
    from stream_orch.observability.status import StatusEvaluator
    from stream_orch.runtime.inspect import PiiMask

    port = port_number(args.port)
    topologies: dict[str, Topo] = {}
    for path in args.files:
        try:
            spec = load_topology(path).spec
        except SpecError as exc:
            raise UserError("\n".join(str(p) for p in exc.problems)) from None
        # the DLQ page masks what the schemas declare PII, as a worker's /tables does
        schemas = SchemaRegistry(find_schemas_dir(path, args.schemas))
        topologies[spec.topology] = Topo(spec, PiiMask.of(spec, schemas.raw_or_none))
    if args.window < 2:
        raise UserError("--window must be at least 2 commits")
    evaluator = StatusEvaluator(window=args.window, min_stop_seconds=args.min_stop)
    live = Live(topologies, settings, _workers(args.workers, settings), evaluator)
    runner = web.AppRunner(make_console_app(live), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, args.host, port)
        try:
            await site.start()
        except OSError as exc:
            raise UserError(f"cannot listen on {args.host}:{port}: {exc.strerror or exc}") from None
        for name in topologies:
            print(f"console: http://{args.host}:{port}/console/{name}", flush=True)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
    return 0
