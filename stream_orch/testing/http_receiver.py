"""A real HTTP receiver for the delivery tests and the fleet demo's dispatcher, run in its own
process (so a test can kill it and start it again on the same port):
``python -m stream_orch.testing.http_receiver --port P --log FILE`` (``tests.http_receiver`` runs it too).
It takes a POST on any path (``/hook``, ``/dispatch``...).

Every request is appended to ``FILE`` as one JSON line, written and flushed before the answer
(a line is a request the receiver took, whatever happened to its answer):
``{"t": epoch s, "key": Idempotency-Key, "status": answered, "body": the parsed JSON}``.

Answers: 400 (body ``rejected: bad record`` on two lines) for a record with ``"bad": true``; 429
with ``Retry-After: <--retry-after>`` the first time a record with ``"throttle": true`` comes
(by key); 200 otherwise. It stops after ``--lifetime`` seconds at most, whatever happens to the
test that started it.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web


def read_log(path: Path) -> list[dict[str, Any]]:
    """The requests a receiver logged to ``path``, in the order it took them (none: no file yet)."""
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def app(log_path: str, retry_after: str) -> web.Application:
    log = open(log_path, "ab", buffering=0)  # noqa: SIM115 - open for the process's life
    throttled: set[str] = set()

    async def hook(request: web.Request) -> web.Response:
        raw = await request.read()
        key = request.headers.get("Idempotency-Key", "")
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        records = body if isinstance(body, list) else [body]
        status, headers, text = 200, {}, "ok"
        if any(isinstance(r, dict) and r.get("bad") for r in records):
            status, text = 400, "rejected:\nbad record"
        elif any(isinstance(r, dict) and r.get("throttle") for r in records) and key not in throttled:
            throttled.add(key)
            status, headers, text = 429, {"Retry-After": retry_after}, "slow down"
        log.write(orjson.dumps({"t": time.time(), "key": key, "status": status, "body": body}) + b"\n")
        return web.Response(status=status, text=text, headers=headers)

    application = web.Application()
    application.router.add_post("/{path:.*}", hook)
    return application


async def serve() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--retry-after", default="3")
    parser.add_argument("--lifetime", type=float, default=300.0)
    args = parser.parse_args()
    runner = web.AppRunner(app(args.log, args.retry_after), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", args.port, reuse_address=True)
    await site.start()
    print("listening", flush=True)
    await asyncio.sleep(args.lifetime)
    await runner.cleanup()


def main() -> None:
    asyncio.run(serve())


if __name__ == "__main__":
    main()
