"""The HTTP sink against a real aiohttp server in this process: what each answer becomes (2xx
delivered; 5xx, a refused connection, a time-out: retry; 429: retry not before Retry-After; other
4xx: reject with the status and a bounded one-line body excerpt), what every request carries
(method, JSON body, headers, Idempotency-Key), batching, and the concurrency limit."""

from __future__ import annotations

import asyncio
import email.utils
import socket

import orjson
import pytest
from aiohttp import web

from stream_orch.sinks import DELIVERED, Reject, Retry, SinkBatch, SinkContext, SinkRecord
from stream_orch.sinks.http import (
    BODY_EXCERPT,
    HttpSink,
    excerpt,
    idempotency_key,
    outcome_of,
    retry_after_ms,
)
from stream_orch.topology.models_delivery import HttpTarget

NOW = 1_767_225_600_000
BATCH = SinkBatch("topo", "node", "topo.node", {("in", 0): 5}, NOW)


def record(i: int, partition: int = 0, *, source_offset: int | None = None, tier: int = 0) -> SinkRecord:
    value = {"id": i, "amount": 1.5}
    topic = "in" if not tier else f"in.retry.{tier}"
    return SinkRecord(
        value, orjson.dumps(value), str(i).encode(), (topic, partition, i),
        ("in", partition, i if source_offset is None else source_offset), NOW, tier,
    )  # fmt: skip


class Receiver:
    """An HTTP server answering each request by ``answer(body, headers) -> web.Response``."""

    def __init__(self, answer) -> None:
        self.answer = answer
        self.requests: list[tuple[str, str, bytes, dict[str, str]]] = []
        self.in_flight = 0
        self.most_in_flight = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            body = await request.read()
            self.requests.append((request.method, request.path, body, dict(request.headers)))
            return await self.answer(body, request.headers)
        finally:
            self.in_flight -= 1


@pytest.fixture
async def serve():
    runners = []

    async def start(answer) -> tuple[Receiver, str]:
        receiver = Receiver(answer)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", receiver.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return receiver, f"http://127.0.0.1:{port}/hook"

    yield start
    for runner in runners:
        await runner.cleanup()


async def sink_for(url: str, **fields) -> HttpSink:
    sink = HttpSink(HttpTarget(url=url, **fields), SinkContext("topo", "node", "crm", "topo.node"))
    await sink.start()
    return sink


def status(code: int, body: bytes = b"", headers: dict | None = None):
    async def answer(_body, _headers):
        return web.Response(status=code, body=body, headers=headers)

    return answer


async def test_2xx_is_delivered_with_the_records_json_and_its_headers(serve) -> None:
    receiver, url = await serve(status(204))
    sink = await sink_for(url, method="PUT", headers={"Authorization": "Bearer s3cret"})
    try:
        outcomes = await sink.deliver([record(1), record(2)], BATCH)
    finally:
        await sink.stop()
    assert outcomes == [DELIVERED, DELIVERED]
    assert [(m, p) for m, p, _, _ in receiver.requests] == [("PUT", "/hook")] * 2
    bodies = sorted(orjson.loads(b)["id"] for _, _, b, _ in receiver.requests)
    assert bodies == [1, 2]
    headers = receiver.requests[0][3]
    assert headers["Authorization"] == "Bearer s3cret" and headers["Content-Type"] == "application/json"
    keys = sorted(h["Idempotency-Key"] for _, _, _, h in receiver.requests)
    assert keys == ["topo/node/in/0/1/crm", "topo/node/in/0/2/crm"]


@pytest.mark.parametrize("code", [500, 502, 503])
async def test_5xx_is_a_retry(serve, code: int) -> None:
    _, url = await serve(status(code, b"down"))
    sink = await sink_for(url)
    try:
        assert await sink.deliver([record(1)], BATCH) == [Retry(f"http_{code}")]
    finally:
        await sink.stop()


async def test_a_refused_connection_is_a_retry() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sink = await sink_for(f"http://127.0.0.1:{port}/hook")
    try:
        assert await sink.deliver([record(1)], BATCH) == [Retry("http_connection")]
    finally:
        await sink.stop()


async def test_a_slow_endpoint_is_a_retry_after_the_timeout(serve) -> None:
    release = asyncio.Event()

    async def slow(_body, _headers):
        await release.wait()
        return web.Response()

    _, url = await serve(slow)
    sink = await sink_for(url, timeout=200)
    try:
        assert await sink.deliver([record(1)], BATCH) == [Retry("http_timeout")]
    finally:
        release.set()
        await sink.stop()


async def test_a_4xx_is_rejected_with_its_status_and_a_bounded_one_line_excerpt(serve) -> None:
    body = b'{"error": "amount\r\nmust be positive"}' + b"x" * 2000
    _, url = await serve(status(422, body))
    sink = await sink_for(url)
    try:
        [outcome] = await sink.deliver([record(1)], BATCH)
    finally:
        await sink.stop()
    assert isinstance(outcome, Reject) and outcome.reason == "http_422"
    got = dict(outcome.headers)
    assert got["so.error.http_status"] == b"422"
    assert got["so.error.http_body"].startswith(b'{"error": "amount  must be positive"}xxx')
    assert len(got["so.error.http_body"]) <= BODY_EXCERPT


async def test_a_429_is_a_retry_not_before_retry_after(serve) -> None:
    _, url = await serve(status(429, headers={"Retry-After": "7"}))
    sink = await sink_for(url)
    try:
        [outcome] = await sink.deliver([record(1)], BATCH)
    finally:
        await sink.stop()
    assert isinstance(outcome, Retry) and outcome.reason == "http_429"
    assert outcome.not_before_ms is not None
    import time

    assert abs(outcome.not_before_ms - (time.time() * 1000 + 7000)) < 2000


def test_retry_after_reads_seconds_and_dates_within_bounds() -> None:
    date = email.utils.formatdate((NOW + 12_000) / 1000, usegmt=True)
    assert retry_after_ms("3", NOW, 60_000) == 3000
    assert retry_after_ms(date, NOW, 60_000) == 12_000
    assert retry_after_ms("999999", NOW, 60_000) == 60_000  # bounded
    assert retry_after_ms(email.utils.formatdate((NOW - 5000) / 1000, usegmt=True), NOW, 60_000) == 0
    assert retry_after_ms("9" * 5000, NOW, 60_000) == 60_000  # a long wait, not a ValueError
    for junk in (None, "", "soon", "-3", "1.5", "\x00", "Fri, 04 Dec 2026 " + "x" * 5000):
        assert retry_after_ms(junk, NOW, 60_000) == 0


def test_outcomes_by_status() -> None:
    assert outcome_of(200, None, b"", NOW, 1000) is DELIVERED
    assert outcome_of(201, None, b"", NOW, 1000) is DELIVERED
    assert outcome_of(503, "5", b"", NOW, 1000) == Retry("http_503")  # Retry-After only on 429
    assert outcome_of(429, None, b"", NOW, 1000) == Retry("http_429", None)  # the tier's delay
    assert outcome_of(429, "30", b"", NOW, 1000) == Retry("http_429", NOW + 1000)
    for code in (301, 400, 401, 404, 409):
        assert isinstance(outcome_of(code, None, b"", NOW, 1000), Reject)


def test_an_excerpt_is_one_line_of_valid_utf8_within_the_bound() -> None:
    assert excerpt(b"a\nb\tc") == b"a b c"
    cut = excerpt("é".encode() * 400)  # 800 bytes, cut inside a character
    assert len(cut) <= BODY_EXCERPT and cut.decode("utf-8")
    assert excerpt(b"\xff\xfe ok").decode("utf-8").endswith("ok")


def test_idempotency_keys_come_from_where_a_record_entered_the_node() -> None:
    first = idempotency_key("t", "n", "crm", [record(41)])
    retried = idempotency_key("t", "n", "crm", [record(0, source_offset=41, tier=2)])
    assert first == retried == "t/n/in/0/41/crm"
    assert idempotency_key("t", "n", "crm", [record(42)]) != first
    assert idempotency_key("t", "n", "erp", [record(41)]) != first
    assert idempotency_key("t", "n", "crm", [record(1, 3)]) != idempotency_key(
        "t", "n", "crm", [record(1, 4)]
    )
    assert idempotency_key("t", "n", "crm", [record(3), record(4), record(9)]) == "t/n/in/0/3-9/3/crm"


async def test_batch_sends_arrays_of_one_partition_and_the_outcome_is_each_records(serve) -> None:
    async def answer(body, _headers):
        ids = [r["id"] for r in orjson.loads(body)]
        return web.Response(status=500 if 3 in ids else 200)

    receiver, url = await serve(answer)
    sink = await sink_for(url, batch=2)
    records = [record(1), record(2), record(3), record(4, partition=1), record(5, partition=1)]
    try:
        outcomes = await sink.deliver(records, BATCH)
    finally:
        await sink.stop()
    sent = sorted(tuple(r["id"] for r in orjson.loads(b)) for _, _, b, _ in receiver.requests)
    assert sent == [(1, 2), (3,), (4, 5)]
    assert outcomes == [DELIVERED, DELIVERED, Retry("http_500"), DELIVERED, DELIVERED]


async def test_no_more_requests_in_flight_than_the_concurrency(serve) -> None:
    async def answer(_body, _headers):
        await asyncio.sleep(0.02)
        return web.Response()

    receiver, url = await serve(answer)
    sink = await sink_for(url, concurrency=3)
    try:
        outcomes = await sink.deliver([record(i) for i in range(12)], BATCH)
    finally:
        await sink.stop()
    assert outcomes == [DELIVERED] * 12
    assert receiver.most_in_flight == 3


async def test_an_unreachable_endpoint_is_not_asked_again_within_the_batch(serve) -> None:
    """A batch of 40 records to an endpoint that never answers: the requests in flight time out,
    the rest are retried without being sent (the node must not hold its batch for 40 time-outs)."""

    release = asyncio.Event()

    async def never(_body, _headers):
        await release.wait()
        return web.Response()

    receiver, url = await serve(never)
    sink = await sink_for(url, timeout=300, concurrency=2)
    try:
        outcomes = await sink.deliver([record(i) for i in range(40)], BATCH)
    finally:
        release.set()
        await sink.stop()
    assert all(isinstance(o, Retry) and o.reason == "http_timeout" for o in outcomes)
    assert len(receiver.requests) <= 2  # at most the two in flight when it was found down


async def test_requests_not_started_by_the_deadline_are_retried_unsent(serve) -> None:
    """An endpoint that answers, slowly: the batch's requests end within DEADLINE_TIMEOUTS
    time-outs; the ones not started by then wait in the tiers, none is lost or answered twice."""
    from stream_orch.sinks import http as sink_module

    async def slow(_body, _headers):
        await asyncio.sleep(0.2)
        return web.Response()

    receiver, url = await serve(slow)
    sink = await sink_for(url, timeout=1000, concurrency=1)  # deadline 3 s: about 15 requests
    try:
        outcomes = await sink.deliver([record(i) for i in range(30)], BATCH)
    finally:
        await sink.stop()
    assert sink_module.DEADLINE_TIMEOUTS == 3
    sent = len(receiver.requests)
    assert 1 <= sent < 30
    assert outcomes[:sent] == [DELIVERED] * sent
    assert outcomes[sent:] == [Retry("http_deadline")] * (30 - sent)


async def test_rate_spaces_the_request_starts(serve, monkeypatch) -> None:
    """`rate: 50`: request k may start no sooner than k / 50 s after the first (the sink's own
    schedule, read through the waits it asks for; no clock is measured)."""
    receiver, url = await serve(status(200))
    sink = await sink_for(url, rate=50, concurrency=4)
    waits: list[float] = []
    real_sleep = asyncio.sleep
    clock = 1000.0
    monkeypatch.setattr("stream_orch.sinks.http.time.monotonic", lambda: clock)

    async def sleep(seconds: float, *args):
        waits.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr("stream_orch.sinks.http.asyncio.sleep", sleep)
    try:
        outcomes = await sink.deliver([record(i) for i in range(10)], BATCH)
    finally:
        monkeypatch.undo()
        await sink.stop()
    assert outcomes == [DELIVERED] * 10 and len(receiver.requests) == 10
    assert sorted(round(w, 6) for w in waits) == [round(k / 50, 6) for k in range(1, 10)]
