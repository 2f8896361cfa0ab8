"""The worker's HTTP endpoint: ``/metrics``, ``/health`` (liveness), ``/ready`` (readiness) and,
only when the worker is given its tables and a token, ``/tables`` (local table stats;
``/tables/<name>/<key>`` one key's value). ``/metrics?name[]=...`` serves only the series named.

The first three are open to anyone who reaches the port (scrapers and probes carry no
credentials) and hold no record data. The table endpoints serve what records put in the tables,
so they exist only with a bearer token, compared in constant time; without tables they answer 404.

aiohttp (a direct dependency of stream-orch) runs it on the worker's own event loop, so serving a
scrape costs no thread and reads the metrics and health flags without locks.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiohttp import web
from prometheus_client.exposition import choose_encoder

from stream_orch.errors import UserError
from stream_orch.observability.health import HealthState
from stream_orch.observability.metrics import Metrics

log = logging.getLogger(__name__)

MAX_NAMES = 64  # series names one /metrics request may restrict itself to


class ObservabilityServer:
    """A running server; ``port`` is the bound port (useful with port 0), ``stop()`` shuts it down."""

    def __init__(self, runner: web.AppRunner, host: str, port: int) -> None:
        self._runner = runner
        self.host = host
        self.port = port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def stop(self) -> None:
        await self._runner.cleanup()


def _json(status: int, body: dict) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")


class Tables(Protocol):
    def stats(self) -> dict[str, Any]: ...

    def lookup(self, name: str, key: str) -> dict[str, Any] | None: ...


_OFF = {"error": "table endpoints are off (STREAM_ORCH_TABLES_ENDPOINT / run --serve-tables)"}
_UNAUTHORIZED = {"error": "table endpoints need Authorization: Bearer <STREAM_ORCH_HTTP_TOKEN>"}

Handler = Callable[[web.Request], Awaitable[web.Response]]


class Reloads(Protocol):
    """The worker's running topology version (``/status``) and its reloads (``/admin/reload``)."""

    def status(self) -> dict[str, Any]: ...

    async def reload_request(self, trigger: str, to_version: str | None) -> tuple[bool, dict[str, Any]]: ...


def _admin_handlers(reloads: Reloads | None, enabled: bool, token: str | None) -> tuple[Handler, Handler]:
    """/status (open: a version and a reload result, no record data) and POST /admin/reload
    (404 unless ``enabled``; with a ``token``, only with it as a bearer token)."""

    async def status(request: web.Request) -> web.Response:
        if reloads is None:
            return _json(404, {"error": "no topology status on this server"})
        return _json(200, reloads.status())

    async def reload(request: web.Request) -> web.Response:
        if reloads is None or not enabled:
            return _json(404, {"error": "the reload endpoint is off (STREAM_ORCH_ADMIN_RELOAD=true)"})
        if token and token.strip():
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            if not (
                scheme.lower() == "bearer"
                and hmac.compare_digest(given.strip().encode(), token.strip().encode())
            ):
                return _json(
                    401, {"error": "the reload endpoint needs Authorization: Bearer <STREAM_ORCH_HTTP_TOKEN>"}
                )
        version = request.query.get("version")
        if version is not None and not (0 < len(version) <= 100):
            return _json(400, {"error": "version: 1 to 100 characters"})
        applied, body = await reloads.reload_request("http", version)
        return _json(200 if applied else 409, body)

    return status, reload


def _table_handlers(tables: Tables | None, token: str | None) -> tuple[Handler, Handler]:
    """The handlers of /tables and /tables/{name}/{key}: 404 without ``tables``; with them, 401
    to every request without ``Authorization: Bearer <token>``."""
    if tables is None:

        async def off(request: web.Request) -> web.Response:
            return _json(404, _OFF)

        return off, off
    if not (token and token.strip()):
        raise ValueError("tables are served only with a bearer token")
    expected = token.strip().encode()
    data: Tables = tables  # not None from here on, inside the handlers too

    def guarded(serve_data: Callable[[web.Request], web.Response]) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            # compare_digest: how long a wrong token takes to refuse says nothing about the right one
            if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected):
                return serve_data(request)
            resp = _json(401, _UNAUTHORIZED)
            resp.headers["WWW-Authenticate"] = 'Bearer realm="stream-orch tables"'
            return resp

        return handler

    def stats(request: web.Request) -> web.Response:
        return _json(200, data.stats())

    def lookup(request: web.Request) -> web.Response:
        name, key = request.match_info["name"], request.match_info["key"]
        found = data.lookup(name, key)
        if found is None:
            return _json(404, {"error": f"no local table {name!r} on this worker"})
        return _json(200 if found["partition"] is not None else 404, found)

    return guarded(stats), guarded(lookup)


def make_app(
    metrics: Metrics,
    health: HealthState | None = None,
    tables: Tables | None = None,
    token: str | None = None,
    reloads: Reloads | None = None,
    admin_reload: bool = False,
    reload_token: str | None = None,
    extra: Callable[[web.Application], None] | None = None,
) -> web.Application:
    """The aiohttp application; ``health=None`` (the lag exporter) makes /health and /ready always 200.
    ``tables`` are served only with ``token``: table data never goes out unauthenticated."""
    tables_handler, table_key_handler = _table_handlers(tables, token)

    async def metrics_handler(request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        # `?name[]=x&name[]=y`: only those series (Prometheus' own exporters take it too): the
        # console asks for its few counters, not every histogram bucket, on each poll
        names = request.query.getall("name[]", [])[:MAX_NAMES]
        body = encoder(metrics.registry.restricted_registry(names) if names else metrics.registry)
        resp = web.Response(body=body)
        resp.headers["Content-Type"] = content_type  # carries its own charset/version parameters
        return resp

    async def health_handler(request: web.Request) -> web.Response:
        if health is None:
            return _json(200, {"status": "ok", "reasons": []})
        live, body = health.liveness()
        return _json(200 if live else 503, body)

    async def ready_handler(request: web.Request) -> web.Response:
        if health is None:
            return _json(200, {"status": "ready", "reason": "exporter"})
        ready, body = health.readiness()
        return _json(200 if ready else 503, body)

    status_handler, reload_handler = _admin_handlers(reloads, admin_reload, reload_token)
    paths = "/metrics /health /ready" + (" /status" if reloads is not None else "")
    paths += (" /tables" if tables is not None else "") + (
        " /admin/reload" if reloads and admin_reload else ""
    )

    async def index(request: web.Request) -> web.Response:
        return web.Response(text=f"stream-orch: {paths}\n")

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/health", health_handler)
    app.router.add_get("/ready", ready_handler)
    app.router.add_get("/tables", tables_handler)
    app.router.add_get("/tables/{name}/{key}", table_key_handler)
    app.router.add_get("/status", status_handler)
    app.router.add_post("/admin/reload", reload_handler)
    if extra is not None:  # more routes (the console at /console), mounted by the caller
        extra(app)
    return app


async def serve(
    metrics: Metrics,
    health: HealthState | None = None,
    host: str = "127.0.0.1",
    port: int = 9308,
    tables: Tables | None = None,
    token: str | None = None,
    reloads: Reloads | None = None,
    admin_reload: bool = False,
    reload_token: str | None = None,
    extra: Callable[[web.Application], None] | None = None,
) -> ObservabilityServer:
    """Starts serving and returns once the socket is bound (port 0 picks a free port); ``tables``
    (served only with ``token``) as in :func:`make_app`."""
    runner = web.AppRunner(
        make_app(metrics, health, tables, token, reloads, admin_reload, reload_token, extra),
        access_log=None,
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise UserError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from None
    bound = runner.addresses[0][1] if runner.addresses else port
    log.info(
        "observability endpoint on http://%s:%d (%s)",
        host,
        bound,
        "/tables on, bearer token required" if tables is not None else "/tables off",
    )
    return ObservabilityServer(runner, host, bound)
