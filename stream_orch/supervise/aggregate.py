"""One /metrics, /health, /ready and /status for every member of a supervised run.

Each member serves its own endpoint on a loopback port only the supervisor knows; a scrape of the
supervisor's port scrapes them all at once and returns their series with a ``member`` label (a
counter summed over members is then ``sum without (member)``), plus the supervisor's own series.
The supervisor keeps no figures of its own beyond its members' restarts.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Sequence
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from stream_orch.supervise.members import Member

_TIMEOUT = aiohttp.ClientTimeout(total=3)


async def _get(session: aiohttp.ClientSession, member: Member, path: str) -> tuple[int, str] | None:
    """(status, body) of a running member's endpoint, None when it is down or does not answer."""
    if not member.running or not member.port:
        return None
    try:
        async with session.get(f"http://127.0.0.1:{member.port}{path}") as resp:
            return resp.status, await resp.text()
    except (TimeoutError, aiohttp.ClientError, OSError):
        return None


def merge_metrics(texts: Sequence[tuple[int, str]], members: Sequence[Member]) -> list[Metric]:
    """Every member's families with a ``member`` label on each sample (members whose text does not
    parse are left out), then the supervisor's own."""
    families: dict[str, Metric] = {}
    for index, text in texts:
        try:
            parsed = list(text_string_to_metric_families(text))
        except ValueError:
            continue  # a member's half-written answer: its series are missing from this scrape only
        for fam in parsed:
            merged = families.setdefault(fam.name, Metric(fam.name, fam.documentation, fam.type, fam.unit))
            for s in fam.samples:
                merged.add_sample(
                    s.name, {**s.labels, "member": str(index)}, s.value, s.timestamp, s.exemplar
                )
    restarts = Metric(
        "stream_orch_supervisor_member_restarts", "Member processes restarted after they died.", "counter"
    )
    up = Metric("stream_orch_supervisor_member_up", "1 while the member process runs.", "gauge")
    for m in members:
        restarts.add_sample(
            "stream_orch_supervisor_member_restarts_total", {"member": str(m.index)}, m.restarts
        )
        up.add_sample("stream_orch_supervisor_member_up", {"member": str(m.index)}, 1.0 if m.running else 0.0)
    return [*families.values(), restarts, up]


class _Fixed:
    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self._families


def render(families: Iterable[Metric]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(families))  # type: ignore[arg-type]
    return generate_latest(registry)


def _member_view(m: Member, answer: tuple[int, str] | None) -> dict[str, Any]:
    view: dict[str, Any] = {
        "member": m.index,
        "pid": m.pid,
        "restarts": m.restarts,
        "state_dir": str(m.state_dir),
    }
    if m.last_exit is not None:
        view["last_exit"] = m.last_exit
    if answer is None:
        view["status"] = "down" if not m.running else "unreachable"
        return view
    view["http_status"] = answer[0]
    try:
        view["body"] = json.loads(answer[1])
    except ValueError:
        view["body"] = None
    return view


def make_app(members: Sequence[Member]) -> web.Application:
    async def gather(path: str) -> list[tuple[int, str] | None]:
        async with aiohttp.ClientSession(timeout=_TIMEOUT) as session:
            return list(await asyncio.gather(*(_get(session, m, path) for m in members)))

    async def metrics(request: web.Request) -> web.Response:
        answers = await gather("/metrics")
        texts = [(m.index, a[1]) for m, a in zip(members, answers, strict=True) if a and a[0] == 200]
        body = render(merge_metrics(texts, members))
        return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    async def probe(path: str, *, starting_ok: bool) -> web.Response:
        answers = await gather(path)
        views = [_member_view(m, a) for m, a in zip(members, answers, strict=True)]
        ok = all((a is not None and a[0] == 200) or (starting_ok and a is None) for a in answers)
        status = {"/health": ("ok", "unhealthy"), "/ready": ("ready", "not ready")}[path][0 if ok else 1]
        return web.json_response({"status": status, "members": views}, status=200 if ok else 503)

    async def health(request: web.Request) -> web.Response:
        # a member being restarted is the supervisor doing its job: the process group stays live
        return await probe("/health", starting_ok=True)

    async def ready(request: web.Request) -> web.Response:
        return await probe("/ready", starting_ok=False)

    async def status(request: web.Request) -> web.Response:
        answers = await gather("/status")
        return web.json_response(
            {"members": [_member_view(m, a) for m, a in zip(members, answers, strict=True)]}
        )

    async def index(request: web.Request) -> web.Response:
        return web.Response(
            text=f"stream-orch supervisor of {len(members)} processes: /metrics /health /ready /status\n"
        )

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/status", status)
    return app
