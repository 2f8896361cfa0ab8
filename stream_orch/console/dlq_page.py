"""The DLQ page of a topology's dead-letter topic: the ``dlq inspect`` view and a replay dry run.

Both read the DLQ on request with the CLI's own functions (:func:`~stream_orch.reliability.dlq.inspect`
and :func:`~stream_orch.reliability.replay.replay` with ``dry_run=True``), so the page's counts
are ``stream-orch dlq inspect``'s and its plan is ``stream-orch dlq replay --dry-run``'s. There is
no button that replays: a replay writes, and stays a CLI action (audited).

What a dead letter carries is untrusted (bytes and headers alike): everything shown is escaped,
header text goes through :func:`~stream_orch.reliability.dlq.printable` as in ``dlq inspect``,
values are shown only when asked for (``?records=N``) and with the topology's PII fields masked
(:class:`~stream_orch.runtime.inspect.PiiMask`, as ``/tables`` masks them). A reason or message
header may quote record values, so only its code is shown here (the whole text is in
``dlq inspect --records``); a value that is not JSON cannot be masked field by field and is shown
only for a topology without PII fields.
"""

from __future__ import annotations

import asyncio
from html import escape
from typing import Any

import orjson
from aiohttp import web

from stream_orch.console.html import LIVE, page, rows, topology_of
from stream_orch.errors import UserError
from stream_orch.observability.metrics import label_code
from stream_orch.reliability import headers as H
from stream_orch.reliability.destinations import topology_origins
from stream_orch.reliability.dlq import Summary, inspect, iso, printable
from stream_orch.reliability.replay import ReplayResult, replay
from stream_orch.runtime.inspect import PiiMask
from stream_orch.topology.graph import dlq_topic
from stream_orch.topology.repartition import expand

MAX_SHOWN = 20  # records a page shows at most (?records=N)
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
    dry_run = request.query.get("dry_run") == "1"
    live = request.app[LIVE]
    topo = live.topologies[name]
    mask = topo.mask
    assert mask is not None  # Topo sets it
    base = f"/console/{escape(name)}/dlq/{escape(topic)}"
    body = f'<p><a href="/console/{escape(name)}">← {escape(name)}</a></p><h1>DLQ {escape(topic)}</h1>'
    try:
        async with request.app[DLQ_READS]:
            summary = await inspect(live.settings, topic, show=shown)
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
    body += _summary_html(summary)
    if shown:
        masked = ", ".join(sorted(mask.fields)) or "none"
        body += f"<h2>First {shown} records</h2><p>PII fields masked: {escape(masked)}.</p>"
        body += "".join(record_html(r, mask) for r in summary.shown)
    else:
        body += f'<p><a href="{base}?records=5">Show the first 5 records (headers, masked values)</a></p>'
    body += plan_html or (
        f'<p><a id="dry-run" href="{base}?dry_run=1">Replay dry run: what would be replayed where</a> '
        "(the replay itself is <code>stream-orch dlq replay</code>, audited)</p>"
    )
    return page(f"DLQ {topic} · {name}", body)


def add_routes(sub: web.Application) -> None:
    sub[DLQ_READS] = asyncio.Semaphore(1)
    sub.router.add_get("/{topology}/dlq/{topic}", dlq_page)
