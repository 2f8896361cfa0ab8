"""The `http:` route target: records as JSON requests to an HTTP API (aiohttp, one session per sink).

Outcomes (:func:`outcome_of`): 2xx delivered; 5xx, a time-out or a connection that fails (refused,
reset, DNS) a retry through the node's tiers; 429 a retry not before its ``Retry-After`` (seconds
or an HTTP date, at most ``max_retry_after``); any other status (4xx, a redirect: redirects are
not followed, a POST must not turn into a GET) a reject: the DLQ at once with the status in
``so.error.http_status`` and the start of the response body, one line of at most
:data:`BODY_EXCERPT` bytes, in ``so.error.http_body``.

A batch's requests end within :data:`DEADLINE_TIMEOUTS` time-outs, and once one of them timed out
or could not connect, the batch's requests not sent yet are not sent: all of them are retries
(the endpoint is down or stuck; the node must not hold its batch, and its partitions, meanwhile).

Every request carries an ``Idempotency-Key`` (:func:`idempotency_key`) made of where its records
first entered the node, so the same record gets the same key in its retries and after a crash.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import time
from collections import Counter
from dataclasses import dataclass

import aiohttp

from stream_orch.sinks.base import (
    DELIVERED,
    Delivered,
    Outcome,
    Reject,
    Retry,
    SinkBatch,
    SinkContext,
    SinkRecord,
)
from stream_orch.topology.models_delivery import HttpTarget

log = logging.getLogger(__name__)

BODY_EXCERPT = 512  # bytes of a refused request's response body kept in its dead letter
_DRAIN = 64 * 1024  # bytes of a delivered request's response body read (the rest is not waited for)
STATUS_HEADER = "so.error.http_status"
BODY_HEADER = "so.error.http_body"


def idempotency_key(topology: str, node: str, target: str, records: list[SinkRecord]) -> str:
    """``<topology>/<node>/<input topic>/<partition>/<offset>/<target>`` for one record: the
    coordinates it first had in the node's input (a retry keeps them), so every try of a record,
    in a retry tier or after a crash, has the same key, and two records never share one (the
    n-th of several records from one input record, window results, has ``<offset>.<n>``).

    A request of several records (``batch: N``, all from one input partition) has
    ``.../<partition>/<first offset>-<last offset>/<count>/<target>``: the same records in the same
    request repeat the key; a retry regroups the records that failed, so its key is a new one
    (receivers that need to drop repeats per record use ``batch: 1``). Names have no ``/``."""
    first, last = records[0], records[-1]
    topic, partition, _ = first.source
    if len(records) == 1:
        return f"{topology}/{node}/{topic}/{partition}/{_place(first)}/{target}"
    return f"{topology}/{node}/{topic}/{partition}/{_place(first)}-{_place(last)}/{len(records)}/{target}"


def _place(record: SinkRecord) -> str:
    """The record's input offset, and ``.n`` for the n-th (n >= 1) of several records one input
    record led to (window results it closed)."""
    offset = record.source[2]
    return f"{offset}.{record.index}" if record.index else str(offset)


def retry_after_ms(value: str | None, now_ms: int, most_ms: int) -> int:
    """How long a 429 asks to wait, in ms, from its ``Retry-After`` (delta seconds or an HTTP date),
    within ``[0, most_ms]``; 0 when it is absent or not readable (the tier's own delay applies).
    The header is the receiver's data: anything unreadable is 0, never an error."""
    if not value:
        return 0
    value = value.strip()
    if value.isascii() and value.isdigit():  # a long run of digits is a long wait (no int() of it)
        return most_ms if len(value) > 12 else min(int(value) * 1000, most_ms)
    if len(value) > 64:  # no HTTP date is that long
        return 0
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return 0
    if when is None or when.tzinfo is None:
        return 0
    return max(0, min(int(when.timestamp() * 1000) - now_ms, most_ms))


def excerpt(body: bytes) -> bytes:
    """The start of a response body as one line of at most :data:`BODY_EXCERPT` bytes (valid UTF-8,
    control characters as spaces): a header value, whatever the receiver sent."""
    text = body[:BODY_EXCERPT].decode("utf-8", "replace")
    line = "".join(c if c.isprintable() else " " for c in text).strip()
    data = line.encode()
    while len(data) > BODY_EXCERPT:  # a replacement character is 3 bytes
        line = line[:-1]
        data = line.encode()
    return data


def status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status < 600 else "other"


def outcome_of(status: int, retry_after: str | None, body: bytes, now_ms: int, most_ms: int) -> Outcome:
    """The outcome of a response."""
    if 200 <= status < 300:
        return DELIVERED
    if status == 429:
        wait = retry_after_ms(retry_after, now_ms, most_ms)
        return Retry("http_429", now_ms + wait if wait else None)
    if 500 <= status < 600:
        return Retry(f"http_{status}")
    return Reject(
        f"http_{status}",
        f"the endpoint answered {status}",
        ((STATUS_HEADER, str(status).encode()), (BODY_HEADER, excerpt(body))),
    )


# A batch's requests end within this many time-outs: those not started by then are retried
# through the tiers (a node must not hold its batch, and its partitions, for long).
DEADLINE_TIMEOUTS = 3


@dataclass
class _Call:
    """One ``deliver`` call's requests: their deadline, and whether the endpoint was found
    unreachable (a time-out or a failed connection), after which none more is sent."""

    deadline: float  # monotonic
    down: str | None = None


class HttpSink:
    def __init__(self, spec: HttpTarget, ctx: SinkContext) -> None:
        self.name = ctx.name
        self._spec = spec
        self._ctx = ctx
        self._headers = {**spec.headers, "Content-Type": "application/json"}
        self._session: aiohttp.ClientSession | None = None
        self._slots = asyncio.Semaphore(spec.concurrency)
        self._interval = 1.0 / spec.rate if spec.rate else 0.0
        self._next_start = 0.0  # monotonic time the next request may start (rate limit)

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._spec.timeout / 1000),
            connector=aiohttp.TCPConnector(limit=self._spec.concurrency),
            # our own headers only; no cookies kept between records
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def on_assign(self, partitions: set[tuple[str, int]]) -> None:
        """Nothing is stored here: the receiver drops repeats by ``Idempotency-Key``."""

    async def deliver(self, records: list[SinkRecord], batch: SinkBatch) -> list[Outcome]:
        if not records:
            return []
        requests = self._requests(records)
        call = _Call(time.monotonic() + DEADLINE_TIMEOUTS * self._spec.timeout / 1000)
        outcomes = await asyncio.gather(*(self._send(chunk, call) for chunk in requests))
        out: list[Outcome] = []
        for chunk, outcome in zip(requests, outcomes, strict=True):
            out.extend([outcome] * len(chunk))
        failed = Counter(o.reason for o in outcomes if not isinstance(o, Delivered))
        if failed:
            log.warning(
                "http target %s: %d of %d requests not delivered: %s",
                self.name,
                sum(failed.values()),
                len(requests),
                dict(failed),
                extra={"node": batch.node},
            )
        return out

    def _requests(self, records: list[SinkRecord]) -> list[list[SinkRecord]]:
        """One request per record, or up to ``batch`` consecutive records of one partition."""
        size = self._spec.batch
        if size == 1:
            return [[r] for r in records]
        chunks: list[list[SinkRecord]] = []
        for record in records:
            last = chunks[-1] if chunks else None
            if last is None or len(last) == size or last[0].consumed[:2] != record.consumed[:2]:
                chunks.append([record])
            else:
                last.append(record)
        return chunks

    async def _send(self, records: list[SinkRecord], call: _Call) -> Outcome:
        session = self._session
        if session is None:
            return Retry("http_not_started")
        ctx = self._ctx
        body = (
            records[0].payload
            if self._spec.batch == 1
            else b"[" + b",".join(r.payload for r in records) + b"]"
        )
        headers = {
            **self._headers,
            "Idempotency-Key": idempotency_key(ctx.topology, ctx.node, self.name, records),
        }
        async with self._slots:
            if call.down is not None:  # the endpoint is unreachable: the rest waits in the tiers
                return Retry(call.down)
            if time.monotonic() > call.deadline:
                return Retry("http_deadline")
            await self._pace()
            started = time.perf_counter()
            try:
                async with session.request(
                    self._spec.method, self._spec.url, data=body, headers=headers, allow_redirects=False
                ) as response:
                    status = response.status
                    if 200 <= status < 300:
                        await response.content.read(_DRAIN)
                        data = b""
                    else:
                        data = await _read_some(response, BODY_EXCERPT)
                    retry_after = response.headers.get("Retry-After")
            except TimeoutError:
                ctx.observe(self.name, "timeout", time.perf_counter() - started)
                call.down = "http_timeout"
                return Retry("http_timeout")
            except aiohttp.ClientConnectionError:
                ctx.observe(self.name, "connection", time.perf_counter() - started)
                call.down = "http_connection"
                return Retry("http_connection")
            except aiohttp.ClientError as exc:  # a malformed response, a payload error
                ctx.observe(self.name, "error", time.perf_counter() - started)
                return Retry(f"http_{type(exc).__name__}")
            ctx.observe(self.name, status_class(status), time.perf_counter() - started)
        return outcome_of(status, retry_after, data, int(time.time() * 1000), self._spec.max_retry_after)

    async def _pace(self) -> None:
        if not self._interval:
            return
        now = time.monotonic()
        start = max(now, self._next_start)
        self._next_start = start + self._interval
        if start > now:
            await asyncio.sleep(start - now)


async def _read_some(response: aiohttp.ClientResponse, most: int) -> bytes:
    data = b""
    while len(data) < most:
        chunk = await response.content.read(most - len(data))
        if not chunk:
            break
        data += chunk
    return data
