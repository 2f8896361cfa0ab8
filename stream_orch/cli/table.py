"""``stream-orch table stats|get``: look inside a running worker's local tables (its /tables)."""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import quote

import orjson

from stream_orch.errors import UserError
from stream_orch.redact import redact_urls
from stream_orch.settings import Settings


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "table",
        help="local table stats and values of a running worker",
        description="Asks a running worker's HTTP endpoint (/tables, served by `run --serve-tables`) with "
        "the bearer token in STREAM_ORCH_HTTP_TOKEN; --url defaults to http://127.0.0.1:<metrics port>.",
    )
    sub = parser.add_subparsers(dest="table_command", metavar="ACTION")
    p = sub.add_parser("stats", help="per table and partition: keys, bytes on disk, checkpointed offset")
    p.add_argument("--url", help="the worker's base URL")
    p.set_defaults(func=_stats)
    p = sub.add_parser("get", help="one key's current value (and the partition holding it)")
    p.add_argument("table", help="table name")
    p.add_argument("key", help="table key (e.g. a txn_id of seen_txns, an account_id of account_velocity)")
    p.add_argument("--url", help="the worker's base URL")
    p.set_defaults(func=_get)
    parser.set_defaults(func=lambda args, settings: parser.error("choose an action: stats or get"))


async def _fetch(url: str, settings: Settings) -> tuple[int, Any]:
    import aiohttp

    token = settings.http_token.get_secret_value().strip() if settings.http_token else ""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(url, headers=headers, timeout=aiohttp.ClientTimeout(10)) as r,
        ):
            status, body = r.status, orjson.loads(await r.read())
    except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as exc:
        raise UserError(
            f"no worker answered at {redact_urls(url)}: {type(exc).__name__} (start one, or pass --url)"
        ) from None
    if status == 401:
        hint = "wrong token in" if token else "set"
        raise UserError(f"{url}: the worker refused: {hint} STREAM_ORCH_HTTP_TOKEN (the worker's token)")
    if status == 404 and isinstance(body, dict) and "table" not in body:  # /tables off, or no such table
        raise UserError(f"{url}: {body.get('error', 'not found')}", exit_code=1)
    return status, body


def _base(args: argparse.Namespace, settings: Settings) -> str:
    return (args.url or f"http://127.0.0.1:{settings.metrics_port}").rstrip("/")


async def _stats(args: argparse.Namespace, settings: Settings) -> int:
    _, body = await _fetch(_base(args, settings) + "/tables", settings)
    print(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode())
    return 0


async def _get(args: argparse.Namespace, settings: Settings) -> int:
    status, body = await _fetch(
        f"{_base(args, settings)}/tables/{quote(args.table, safe='')}/{quote(args.key, safe='')}", settings
    )
    print(orjson.dumps(body).decode())
    return 0 if status == 200 else 1
