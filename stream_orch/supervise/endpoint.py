"""The supervisor's HTTP endpoint: the members' ``/metrics`` merged (labelled ``process``), and
``/health``, ``/ready``, ``/status`` answering 200 only when every member does (the body holds
each member's answer). Members are asked on each request, on their own loopback ports."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from stream_orch.errors import UserError
from stream_orch.observability.aggregate import merge, render
from stream_orch.observability.http import ObservabilityServer
from stream_orch.supervise.supervisor import Supervisor

_TIMEOUT = aiohttp.ClientTimeout(total=3)


async def _ask(session: aiohttp.ClientSession, port: int, path: str) -> tuple[int, str]:
    try:
        async with session.get(f"http://127.0.0.1:{port}{path}") as resp:
            return resp.status, await resp.text()
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return 503, json.dumps({"status": "unreachable", "reason": type(exc).__name__})


def _body(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return {"status": "unreadable"}


def make_app(supervisor: Supervisor) -> web.Application:
    ports = {m.plan.name: m.plan.metrics_port for m in supervisor.members}

    async def ask_all(path: str) -> dict[str, tuple[int, str]]:
        async with aiohttp.ClientSession(timeout=_TIMEOUT) as session:
            answers = await asyncio.gather(*(_ask(session, p, path) for p in ports.values()))
        return dict(zip(ports, answers, strict=True))

    async def metrics(request: web.Request) -> web.Response:
        answers = await ask_all("/metrics")
        texts = {name: text for name, (status, text) in answers.items() if status == 200}
        body = render(merge(texts), supervisor.registry)
        return web.Response(body=body, content_type="text/plain", charset="utf-8")

    def all_of(path: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            answers = await ask_all(path)
            ok = all(status == 200 for status, _ in answers.values())
            body = {
                "ok": ok,
                "members": {n: {"code": s, **_as_dict(_body(t))} for n, (s, t) in answers.items()},
            }
            return web.Response(
                status=200 if ok else 503, text=json.dumps(body), content_type="application/json"
            )

        return handler

    app = web.Application()
    app.router.add_get("/", lambda r: _index())
    app.router.add_get("/metrics", metrics)
    for path in ("/health", "/ready", "/status"):
        app.router.add_get(path, all_of(path))
    return app


async def _index() -> web.Response:
    return web.Response(text="stream-orch supervisor: /metrics /health /ready /status\n")


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {"body": value}


async def serve(supervisor: Supervisor, host: str, port: int) -> ObservabilityServer:
    runner = web.AppRunner(make_app(supervisor), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise UserError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from None
    return ObservabilityServer(runner, host, port)
