"""Reading workers' ``/metrics``: the counters the console shows, and rates between two polls.

A worker's answer is untrusted: anything that does not parse as Prometheus text makes that
worker "metrics unreadable" (:class:`Unreadable`), never an exception out of the poll.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from stream_orch.observability.metrics import PREFIX

MAX_BODY = 8 * 1024 * 1024  # a /metrics page larger than this is not a worker's
# The series the console reads (live.py): asked for by name, so a poll costs the worker a few
# counters, not its whole page of histograms (benchmarks/console_overhead.py: a fraud worker
# spent 1.69 ms of CPU per whole page, 0.69 ms per console poll with the names)
SERIES = (
    "events_in_total", "events_out_total", "events_dropped_total", "dead_lettered_total",
    "errors_total", "node_restarts_total", "table_entries",
)  # fmt: skip
QUERY = "&".join(f"name[]={PREFIX}{name}" for name in SERIES)

# (metric name without prefix, labels) -> value
Sample = tuple[str, tuple[tuple[str, str], ...]]


class Unreadable(Exception):
    """The worker answered, but not with Prometheus text."""


def parse(text: str) -> dict[Sample, float]:
    """``stream_orch_*`` samples of a Prometheus text page; :class:`Unreadable` on garbage."""
    out: dict[Sample, float] = {}
    try:
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name.startswith(PREFIX) and not s.name.endswith("_created"):
                    out[(s.name[len(PREFIX) :], tuple(sorted(s.labels.items())))] = float(s.value)
    except Exception as exc:  # the parser raises ValueError, IndexError... on bad input
        raise Unreadable(type(exc).__name__) from None
    if text.strip() and not out and "# " not in text:
        raise Unreadable("no stream_orch metrics")
    return out


@dataclass
class WorkerReading:
    url: str
    samples: dict[Sample, float] = field(default_factory=dict)
    error: str | None = None  # "down" or "metrics unreadable"
    at: float = 0.0


async def scrape(session: aiohttp.ClientSession, url: str, now: float) -> WorkerReading:
    try:
        async with session.get(url.rstrip("/") + "/metrics?" + QUERY) as resp:
            body = await resp.content.read(MAX_BODY + 1)
            if resp.status != 200 or len(body) > MAX_BODY:
                return WorkerReading(url, error="metrics unreadable", at=now)
            return WorkerReading(url, parse(body.decode("utf-8", "replace")), at=now)
    except Unreadable:
        return WorkerReading(url, error="metrics unreadable", at=now)
    except (TimeoutError, aiohttp.ClientError, OSError):
        return WorkerReading(url, error="down", at=now)


def total(samples: dict[Sample, float], name: str, **match: str) -> float:
    """Sum of ``name``'s samples whose labels include ``match``."""
    return sum(v for (n, labels), v in samples.items() if n == name and match.items() <= dict(labels).items())


def by_label(samples: dict[Sample, float], name: str, label: str, **match: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for (n, labels), v in samples.items():
        d = dict(labels)
        if n == name and match.items() <= d.items() and label in d:
            out[d[label]] = out.get(d[label], 0.0) + v
    return out
