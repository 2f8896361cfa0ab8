"""The console's aiohttp application: one page per topology, a JSON endpoint it polls, node pages.

Pages are rendered on the server with the figures of the last poll, so they read without JS;
``static/console.js`` refreshes them every few seconds. Any error becomes a plain page (the
middleware): never a stack trace in the browser.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from html import escape
from importlib import resources
from typing import Any

from aiohttp import web

from stream_orch.console.dlq_page import add_routes as add_dlq_routes
from stream_orch.console.dlq_page import dlq_topics
from stream_orch.console.html import LIVE, POLL_S, errors_as_pages, fmt, page, rows, topology_of
from stream_orch.console.layout import to_svg
from stream_orch.console.live import Live, Topo
from stream_orch.runtime.inspect import PiiMask
from stream_orch.settings import Settings
from stream_orch.topology.models import TopologySpec
from stream_orch.topology.naming import DECODE_STAGE, DELIVER_STAGE, ROUTE_STAGE, step_labels

log = logging.getLogger(__name__)


def _banner(fig: dict[str, Any]) -> str:
    if fig["broker_error"]:
        return f'<div class="banner" role="alert" id="broker">{escape(fig["broker_error"])}</div>'
    return '<div class="banner" role="alert" id="broker" hidden></div>'


def _node_rows(fig: dict[str, Any], base: str) -> str:
    rows = []
    for name, n in fig["nodes"].items():
        status = n["status"] or "-"
        dlq = _reasons(n["dlq_by_reason"])
        tiers = ", ".join(f"{escape(t)}: {c}" for t, c in n["retry_tiers"].items()) or "-"
        rows.append(
            f'<tr id="row-{escape(name)}"><th scope="row">'
            f'<a href="{base}/node/{escape(name)}">{escape(name)}</a></th>'
            f'<td class="worker">{escape(n["worker"] or "ok")}</td><td class="status">{escape(status)}</td>'
            f'<td class="lag">{fmt(n["lag_records"])}</td>'
            f'<td class="lags">{fmt(n["lag_seconds"], " s")}</td>'
            f'<td class="restarts">{int(n["restarts"])}</td>'
            f'<td class="dlq">{dlq}</td><td><a href="{base}/dlq/{escape(n["dlq_topic"])}">'
            f'{escape(n["dlq_topic"])}</a></td><td class="tiers">{tiers}</td></tr>'
        )
    return "".join(rows)


def _reasons(counts: dict[str, float]) -> str:
    return escape(", ".join(f"{r}: {int(c)}" for r, c in sorted(counts.items()))) or "0"


async def topology_page(request: web.Request) -> web.Response:
    name = topology_of(request)
    live = request.app[LIVE]
    topo = live.topologies[name]
    fig = live.figures(name)
    base = f"/console/{name}"
    svg = to_svg(
        topo.graph,
        {n: f"{base}/node/{n}" for n in topo.spec.nodes},
        {t: f"{base}/dlq/{t}" for t in dlq_topics(request, name)},
    )
    tables = "".join(
        f"<tr><th scope='row'>{escape(t)}</th><td>{fmt(fig['tables'].get(t))}</td></tr>"
        for t in topo.graph.tables
    )
    body = (
        f"<h1>{escape(name)}</h1>"
        f'<p>version <span id="version">{escape(str(fig["version"]))}</span> · processing '
        f'<span id="processing">{escape(fig["processing"])}</span> · refreshed every {POLL_S:g} s</p>'
        f"{_banner(fig)}<figure>{svg}<figcaption>Data flow; rates in records/s.</figcaption></figure>"
        "<h2>Nodes</h2><table id='nodes'><thead><tr><th>node</th><th>worker</th><th>status</th>"
        "<th>lag (records)</th><th>lag (s)</th><th>restarts</th><th>DLQ by reason</th><th>dead letters</th>"
        "<th>retry tiers (lag)</th></tr></thead>"
        f"<tbody>{_node_rows(fig, base)}</tbody></table>"
        f"<h2>Tables</h2><table id='tables'><tbody>{tables or '<tr><td>none</td></tr>'}</tbody></table>"
        f'<script src="/console/static/console.js" data-endpoint="{base}/data.json"></script>'
    )
    return page(f"{name} · stream-orch console", body)


async def data(request: web.Request) -> web.Response:
    name = topology_of(request)
    return web.json_response(request.app[LIVE].figures(name))


async def node_page(request: web.Request) -> web.Response:
    name = topology_of(request)
    live = request.app[LIVE]
    node = request.match_info["node"]
    spec = live.topologies[name].spec
    if node not in spec.nodes:
        raise web.HTTPNotFound(text=f"topology {name!r} has no node {node!r}")
    n = live.figures(name)["nodes"][node]
    # the runtime counts drops per reason (filter, duplicate...) and dead letters per reason and
    # per step (the step label: its place and kind, or the decode/route/deliver stages)
    dropped = live.sum_of("events_dropped_total", "reason", node=node)
    labels = step_labels(spec.nodes[node])
    places = [
        (DECODE_STAGE, "decoding the record"),
        *((label, type(s).__name__) for label, s in zip(labels, spec.nodes[node].steps, strict=True)),
        (ROUTE_STAGE, "rendering outputs"),
        (DELIVER_STAGE, "delivering to a target"),
    ]
    steps = "".join(
        f"<tr id='step-{escape(label)}'><th scope='row'>{escape(label)}</th><td>{escape(kind)}</td>"
        f"<td class='rejects'>{_reasons(live.sum_of('dead_lettered_total', 'reason', node=node, step=label))}"
        "</td></tr>"
        for label, kind in places
    )
    body = (
        f'<p><a href="/console/{escape(name)}">← {escape(name)}</a></p><h1>node {escape(node)}</h1>'
        f"<p>worker {escape(n['worker'] or 'ok')} · status {escape(n['status'] or '-')} · "
        f"lag {fmt(n['lag_records'])} records, "
        f"{fmt(n['lag_seconds'], ' s')} · restarts {int(n['restarts'])} · "
        f"DLQ topic <a href='/console/{escape(name)}/dlq/{escape(n['dlq_topic'])}'>"
        f"{escape(n['dlq_topic'])}</a></p>"
        "<h2>Steps</h2><table id='steps'><thead><tr><th>step</th><th>kind</th>"
        "<th>dead-lettered here (by reason)</th></tr></thead>"
        f"<tbody>{steps}</tbody></table><h2>Dropped on purpose (filtered, duplicate...) by reason</h2>"
        f"<table><tbody>{rows(dropped)}</tbody></table>"
        "<h2>Errors (codes and counts; no record values)</h2>"
        f"<table><tbody>{rows(n['errors'])}</tbody></table>"
        f"<h2>DLQ by reason</h2><table><tbody>{rows(n['dlq_by_reason'])}</tbody></table>"
    )
    return page(f"{node} · {name}", body)


async def index(request: web.Request) -> web.Response:
    links = "".join(
        f'<li><a href="/console/{escape(n)}">{escape(n)}</a></li>'
        for n in sorted(request.app[LIVE].topologies)
    )
    return page("stream-orch console", f"<h1>Topologies</h1><ul>{links}</ul>")


async def script(request: web.Request) -> web.Response:
    text = resources.files("stream_orch.console").joinpath("static/console.js").read_text()
    return web.Response(text=text, content_type="application/javascript")


async def _poller(app: web.Application) -> Any:
    live = app[LIVE]

    async def loop() -> None:
        while True:
            try:
                await live.poll()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the console must keep serving
                log.warning("console poll failed: %s", type(exc).__name__)
            await asyncio.sleep(POLL_S)

    task = asyncio.create_task(loop())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await live.close()


async def no_icon(request: web.Request) -> web.Response:
    return web.Response(status=204)  # browsers ask for it: no 404 in their console


def console_subapp(live: Live, *, poll: bool = True) -> web.Application:
    """The console's routes, to mount at ``/console`` (here, or on a worker's HTTP server)."""
    sub = web.Application(middlewares=[errors_as_pages])
    sub[LIVE] = live
    if poll:
        sub.cleanup_ctx.append(_poller)
    sub.router.add_get("/", index)
    sub.router.add_get("/static/console.js", script)
    sub.router.add_get("/{topology}", topology_page)
    sub.router.add_get("/{topology}/data.json", data)
    sub.router.add_get("/{topology}/node/{node}", node_page)
    add_dlq_routes(sub)
    return sub


def mount(app: web.Application, live: Live, *, poll: bool = True) -> None:
    async def to_index(request: web.Request) -> web.Response:
        raise web.HTTPFound("/console/")

    app.router.add_get("/console", to_index)
    app.add_subapp("/console", console_subapp(live, poll=poll))


def console_mount(
    spec: TopologySpec, settings: Settings, mask: PiiMask | None = None
) -> Callable[[web.Application], None]:
    """A worker's console at /console (STREAM_ORCH_CONSOLE=true): its topology, read from the
    worker's own /metrics over loopback and from the broker's offsets; ``mask``: its PII rules."""
    host = settings.metrics_host
    host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    live = Live({spec.topology: Topo(spec, mask)}, settings, [f"http://{host}:{settings.metrics_port}"])
    return lambda app: mount(app, live)


def make_console_app(live: Live, *, poll: bool = True) -> web.Application:
    """The standalone console (``stream-orch console``)."""
    app = web.Application(middlewares=[errors_as_pages])
    app[LIVE] = live
    app.router.add_get("/favicon.ico", no_icon)
    mount(app, live, poll=poll)
    return app
