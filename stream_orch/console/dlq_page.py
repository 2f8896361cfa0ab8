"""The DLQ page of a topology's dead-letter topic: the ``dlq inspect`` view and a replay dry run.

The view reads a window of the DLQ on request, the newest ``WINDOW`` offsets shared out between
its partitions (:class:`~stream_orch.reliability.dlq.Window`), so a DLQ of millions of records
costs a page no more than one of ``WINDOW``; an *older* link moves the window back, to the
offsets before it in each partition. Its summary is ``stream-orch dlq inspect``'s (the same
counting) over that window: the whole DLQ's when the window holds it all. The dry run, on request
only, is ``stream-orch dlq replay --dry-run``'s (:func:`~stream_orch.reliability.replay.replay`
with ``dry_run=True``) and reads the whole DLQ, as the command does. There is no button that
replays: a replay writes, and stays a CLI action (audited).

What a dead letter carries is untrusted (bytes and headers alike): everything shown is escaped,
header text goes through :func:`~stream_orch.reliability.dlq.printable` as in ``dlq inspect``,
values are shown only when asked for (``?records=N``: the window's newest) and with the
topology's PII fields masked (:class:`~stream_orch.runtime.inspect.PiiMask`, as ``/tables``
masks them). A reason or message header may quote record values, so only its code is shown here
(the whole text is in ``dlq inspect --records``); a value that is not JSON cannot be masked field
by field and is shown only for a topology without PII fields.
"""

from __future__ import annotations

import asyncio
from html import escape
from typing import Any
from urllib.parse import urlencode

import orjson
from aiohttp import web

from stream_orch.console.html import LIVE, page, rows, topology_of
from stream_orch.errors import UserError
from stream_orch.observability.metrics import label_code
from stream_orch.reliability import headers as H
from stream_orch.reliability.destinations import topology_origins
from stream_orch.reliability.dlq import Summary, Window, inspect_window, iso, printable
from stream_orch.reliability.replay import ReplayResult, replay
from stream_orch.runtime.inspect import PiiMask
from stream_orch.topology.graph import dlq_topic
from stream_orch.topology.repartition import expand

MAX_SHOWN = 20  # records a page shows at most (?records=N)
WINDOW = 10_000  # offsets of the DLQ a page reads at most (its partitions share them)
CODE_ONLY = frozenset({H.ERROR_REASON, H.ERROR_MESSAGE})  # may quote record values
DLQ_READS = web.AppKey("dlq_reads", asyncio.Semaphore)  # one DLQ read at a time per console


def dlq_topics(request: web.Request, name: str) -> list[str]:
    spec = request.app[LIVE].topologies[name].spec
    return sorted({dlq_topic(node) for node in spec.nodes.values()})


def _shown_count(request: web.Request) -> int:
    text = request.query.get("records", "0")
    if not text.isdigit() or int(text) > MAX_SHOWN:
        raise web.HTTPBadRequest(text=f"records: a whole number from 0 to {MAX_SHOWN} (got {text[:20]!r})")
    return int(text)


def _before(request: web.Request) -> dict[int, int]:
    """``?before=P:O,...``: the window ends before offset O of partition P (default: its end)."""
    text = request.query.get("before", "")
    out: dict[int, int] = {}
    for item in filter(None, text.split(",")):
        partition, _, offset = item.partition(":")
        if not (partition.isdigit() and offset.isdigit()):
            bad = f"before: partition:offset pairs, comma-separated (got {text[:40]!r})"
            raise web.HTTPBadRequest(text=bad)
        out[int(partition)] = int(offset)
    return out


def _value(record: dict[str, Any], mask: PiiMask) -> str:
    value = record["value"]
    if value is None:
        return "(no value)"
    if record.get("value_encoding") or not isinstance(value, dict | list):
        kind = "not JSON" if record.get("value_encoding") or isinstance(value, str) else "JSON scalar"
        if mask.fields:
            return f"({kind}; not shown: its PII fields cannot be masked)"
        return f"({kind}{', base64' if record.get('value_encoding') else ''}) {printable(str(value))}"
    return orjson.dumps(mask.record(value), option=orjson.OPT_INDENT_2).decode()


def record_html(record: dict[str, Any], mask: PiiMask) -> str:
    headers = []
    for key, text in record["headers"].items():
        if text is None:
            shown = "(no value)"
        elif key in CODE_ONLY:
            shown = label_code(text) + " (details: stream-orch dlq inspect --records)"
        else:
            shown = printable(text)
        headers.append(f"<tr><th scope='row'>{escape(printable(key))}</th><td>{escape(shown)}</td></tr>")
    key = "(none)" if record["key"] is None else printable(record["key"])
    return (
        f"<section class='record'><h3>partition {record['partition']} offset {record['offset']}</h3>"
        f"<p>key {escape(key)}</p><table class='headers'><tbody>{''.join(headers)}</tbody></table>"
        f"<pre class='value'>{escape(_value(record, mask))}</pre></section>"
    )


def _summary_html(summary: Summary) -> str:
    if not summary.records:
        return "<p id='summary'>no dead letters</p>"
    return (
        f"<p id='summary'><span id='records'>{summary.records}</span> dead letters, first seen "
        f"<span id='first'>{iso(summary.first_ms)}</span>, last seen "
        f"<span id='last'>{iso(summary.last_ms)}</span></p>"
        f"<h2>By reason</h2><table id='by-reason'><tbody>{rows(dict(summary.by_reason))}</tbody></table>"
        f"<h2>By node</h2><table id='by-node'><tbody>{rows(dict(summary.by_node))}</tbody></table>"
        "<h2>By original topic</h2>"
        f"<table id='by-topic'><tbody>{rows(dict(summary.by_topic))}</tbody></table>"
    )


def _query(records: int, before: dict[int, int]) -> str:
    pairs = ",".join(f"{p}:{o}" for p, o in sorted(before.items()))
    return urlencode({k: v for k, v in (("records", records), ("before", pairs)) if v})


def _window_html(base: str, window: Window, shown: int) -> str:
    """Which offsets the page read, with links to older and back to the newest dead letters."""
    if not window.older and not window.newer:
        return "<p id='window'>Read the whole DLQ.</p>"
    where = f"{window.newer} offsets before the end" if window.newer else "the newest"
    html = f"<p id='window'>Read {window.per_partition} offsets of each partition, {where}"
    if window.older:
        older = f'<a id="older" href="{base}?{escape(_query(shown, window.start))}">older</a>'
        html += f"; there are more: {window.older} older offsets ({older})"
    if window.newer:
        html += f'; <a id="newest" href="{base}?{escape(_query(shown, {}))}">newest</a>'
    return html + ".</p>"


def _plan_html(topic: str, plan: ReplayResult, lines: list[str]) -> str:
    said = "".join(f"<li>{escape(line)}</li>" for line in lines)
    return (
        "<h2>Replay dry run</h2><p>What <code>stream-orch dlq replay "
        f"{escape(topic)} --topology FILE --dry-run</code> says now; nothing was written.</p>"
        f"<ul id='plan'>{said}</ul><p id='plan-result'>{escape(plan.render(True))}</p>"
    )


async def dlq_page(request: web.Request) -> web.Response:
    name = topology_of(request)
    topic = request.match_info["topic"]
    topics = dlq_topics(request, name)
    if topic not in topics:
        raise web.HTTPNotFound(
            text=f"{topic!r} is not a dead-letter topic of {name} (its DLQs: {', '.join(topics)})"
        )
    shown = _shown_count(request)
    window = Window(WINDOW, _before(request))
    dry_run = request.query.get("dry_run") == "1"
    live = request.app[LIVE]
    topo = live.topologies[name]
    mask = topo.mask
    assert mask is not None  # Topo sets it
    base = f"/console/{escape(name)}/dlq/{escape(topic)}"
    body = f'<p><a href="/console/{escape(name)}">← {escape(name)}</a></p><h1>DLQ {escape(topic)}</h1>'
    try:
        async with request.app[DLQ_READS]:
            summary = await inspect_window(live.settings, topic, window, show=shown)
            plan_html = ""
            if dry_run:
                lines: list[str] = []
                plan = await replay(
                    live.settings,
                    topic,
                    origins=topology_origins(expand(topo.spec), topic),
                    dry_run=True,
                    announce=lines.append,
                )
                plan_html = _plan_html(topic, plan, lines)
    except UserError as exc:  # the topic does not exist yet, or the broker is unreachable
        body += f'<div class="banner" role="alert">{escape(str(exc))}</div>'
        return page(f"DLQ {topic}", body)
    body += _window_html(base, window, shown) + _summary_html(summary)
    if shown:
        masked = ", ".join(sorted(mask.fields)) or "none"
        body += f"<h2>Newest {shown} records read</h2><p>PII fields masked: {escape(masked)}.</p>"
        body += "".join(record_html(r, mask) for r in summary.shown)
    else:
        five = escape(_query(5, window.before))
        body += f'<p><a href="{base}?{five}">Show the newest 5 records read (headers, masked values)</a></p>'
    body += plan_html or (
        f'<p><a id="dry-run" href="{base}?dry_run=1">Replay dry run: what would be replayed where</a> '
        "(reads the whole DLQ; the replay itself is <code>stream-orch dlq replay</code>, audited)</p>"
    )
    return page(f"DLQ {topic} · {name}", body)


def add_routes(sub: web.Application) -> None:
    sub[DLQ_READS] = asyncio.Semaphore(1)
    sub.router.add_get("/{topology}/dlq/{topic}", dlq_page)
