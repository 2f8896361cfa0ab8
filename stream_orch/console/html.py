"""What every console page shares: the page frame and its style, the error middleware, the
topology a URL names and the formatting of figures."""

from __future__ import annotations

import asyncio
import logging
from html import escape
from typing import Any

from aiohttp import web

from stream_orch.console.live import Live

log = logging.getLogger(__name__)

POLL_S = 3.0
LIVE = web.AppKey("live", Live)

_CSS = """
body{font-family:sans-serif;margin:1rem;color:#111;background:#fff}
.banner{background:#fde2e1;border:2px solid #a00;padding:.5rem;margin:.5rem 0}
svg .vertex rect{fill:#f4f4f4;stroke:#333}svg .node rect{fill:#e8f0fe}
svg text{font-size:12px;fill:#111}svg .edge path{fill:none;stroke:#555}
svg .edge.dlq path,svg .edge.retry path{stroke:#a00;stroke-dasharray:4 3}
svg a:focus rect{stroke:#000;stroke-width:3}svg .dlqlink rect{fill:#fdecea}
svg .OK rect{fill:#d7f5d7}svg .WARN rect{fill:#fff1c2}svg .STALL rect,svg .STOP rect,
svg .REWIND rect,svg .ERR rect{fill:#fbd0d0}
table{border-collapse:collapse}td,th{border:1px solid #999;padding:2px 6px;text-align:left}
pre{white-space:pre-wrap;background:#f4f4f4;padding:.5rem}
"""


def page(title: str, body: str, status: int = 200) -> web.Response:
    html = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{_CSS}</style></head><body>{body}</body></html>"
    )
    return web.Response(text=html, content_type="text/html", status=status)


@web.middleware
async def errors_as_pages(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return page(
            f"{exc.status}", f"<h1>{exc.status}</h1><p>{escape(exc.text or exc.reason)}</p>", exc.status
        )
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("console page failed")  # the details go to the log, not the browser
        return page("error", "<h1>500</h1><p>The console failed to render this page; see its log.</p>", 500)


def topology_of(request: web.Request) -> str:
    name = request.match_info["topology"]
    if name not in request.app[LIVE].topologies:
        known = ", ".join(sorted(request.app[LIVE].topologies)) or "none"
        raise web.HTTPNotFound(text=f"no topology named {name!r} in this console (known: {known})")
    return name


def fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:.1f}{unit}" if isinstance(value, float) else f"{value}{unit}"


def rows(counts: dict[str, float]) -> str:
    """``counts`` as table rows, by key; one "none" row when empty."""
    out = "".join(
        f"<tr><th scope='row'>{escape(k)}</th><td>{int(v)}</td></tr>" for k, v in sorted(counts.items())
    )
    return out or "<tr><td>none</td></tr>"
