"""External route targets through the worker's own record path (the test driver runs the node's
``NodePipeline``; its sinks are :class:`MemorySink` with scripted outcomes): the model and the
names of targets, what a target receives, and the retry of one target (``so.retry.target``):
only that target is delivered again, other routes' outputs are not repeated, and a header naming
no target of the node sends the record to the DLQ."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from stream_orch.reliability import headers as H
from stream_orch.sinks import DELIVERED, MemorySink, Reject, Retry, SinkRecord
from stream_orch.testing import TopologyTestDriver
from stream_orch.topology.loader import load_topology
from stream_orch.topology.models import RouteSpec
from stream_orch.topology.models_delivery import external_targets

T0 = 1_767_225_600_000

TOPOLOGY = """
topology: deliver
topics:
  orders: {partitions: 2, key: id}
  orders.copy: {partitions: 2, key: id}
  orders.dlq: {partitions: 2}
nodes:
  ship:
    input: orders
    steps:
      - {step: derive, fields: {doubled: "amount * 2"}}
    routes:
      - to: [orders.copy, {http: {url: "http://127.0.0.1:1/${HOOK_PATH:orders}"}}]
      - when: "amount > 100"
        to: {http: {name: big, url: "http://127.0.0.1:1/big", batch: 10}}
    errors:
      retry: {delays: [1s, 5s]}
      dlq: orders.dlq
"""


def load(tmp_path: Path, text: str = TOPOLOGY, env: dict | None = None):
    path = tmp_path / "t.yaml"
    path.write_text(text)
    (tmp_path / "schemas").mkdir(exist_ok=True)
    return load_topology(path, env or {})


def order(i: int, amount: int = 10) -> dict:
    return {"id": f"o{i}", "amount": amount}


@pytest.fixture
def driver(tmp_path: Path):
    loaded = load(tmp_path)
    with TopologyTestDriver(loaded, schemas=tmp_path / "schemas", start_ms=T0) as d:
        yield d


def sinks(driver: TopologyTestDriver) -> dict[str, MemorySink]:
    driver.process()  # what was piped so far
    return driver.nodes["ship"].pipeline.sinks  # type: ignore[return-value]


def test_targets_are_parsed_named_and_kept_apart_from_topics(tmp_path: Path) -> None:
    spec = load(tmp_path, env={"HOOK_PATH": "v2/orders"}).spec
    node = spec.nodes["ship"]
    assert [t.topic for t in node.routes[0].targets()] == ["orders.copy"]  # topics only
    assert node.routes[1].targets() == []
    named = external_targets(node)
    assert [(t.route, t.kind, t.name) for t in named] == [(0, "http", "http"), (1, "http", "big")]
    http = named[0].spec
    assert http.url == "http://127.0.0.1:1/v2/orders"  # ${VAR} from the environment
    assert (http.method, http.batch, http.concurrency, http.timeout, http.rate) == (
        "POST",
        1,
        8,
        10_000,
        None,
    )
    # two unnamed targets of one kind: numbered
    two = RouteSpec.model_validate({"to": [{"http": {"url": "http://a/"}}, {"http": {"url": "http://b/"}}]})
    node.routes = [two]
    assert [t.name for t in external_targets(node)] == ["http_1", "http_2"]


def test_a_url_that_is_not_http_is_refused(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="url"):
        RouteSpec.model_validate({"to": {"http": {"url": "file:///etc/passwd"}}})


def test_each_target_gets_the_records_its_route_chooses(driver: TopologyTestDriver) -> None:
    driver.pipe("orders", order(1, 10), key="o1")
    driver.pipe("orders", order(2, 500), key="o2")
    got = {name: [r.value["id"] for r in s.received] for name, s in sinks(driver).items()}
    assert got == {"http": ["o1", "o2"], "big": ["o2"]}
    [rec] = [r for r in sinks(driver)["http"].received if r.value["id"] == "o1"]
    assert rec.value == {"id": "o1", "amount": 10, "doubled": 20}  # after the steps
    assert orjson.loads(rec.payload) == rec.value
    assert rec.source == ("orders", rec.consumed[1], 0) and rec.attempt == 0
    assert sorted(r.value["id"] for r in driver.records("orders.copy")) == ["o1", "o2"]


def failing(reason: str, ids: set[str], then_ok: bool = True):
    """A sink answer: ``Retry(reason)`` for the records of ``ids`` (once each if ``then_ok``)."""
    seen: set[str] = set()

    def answer(record: SinkRecord):
        key = record.value["id"]
        if key in ids and not (then_ok and key in seen):
            seen.add(key)
            return Retry(reason)
        return DELIVERED

    return answer


def test_a_failed_target_is_retried_alone_and_the_other_routes_are_not_repeated(
    driver: TopologyTestDriver,
) -> None:
    sinks(driver)["http"]._answer = failing("http_503", {"o1"})
    driver.pipe("orders", order(1, 500), key="o1")
    [retry] = driver.pending_retries()
    assert retry.headers[H.RETRY_TARGET] == "http"
    assert orjson.loads(retry.raw_value) == {**order(1, 500), "doubled": 1000}  # as rendered
    driver.advance(2)
    assert [r.value["id"] for r in sinks(driver)["http"].received] == ["o1"]
    [again] = sinks(driver)["http"].received
    assert again.attempt == 1 and again.source == ("orders", again.consumed[1], 0)  # same key
    assert [r.value["id"] for r in sinks(driver)["big"].received] == ["o1"]  # once: not retried
    assert [r.value["id"] for r in driver.records("orders.copy")] == ["o1"]  # once
    assert driver.pending_retries() == [] and driver.dead_letters() == []


def test_a_target_that_keeps_failing_ends_in_the_dlq_with_its_name(driver: TopologyTestDriver) -> None:
    sinks(driver)["big"]._answer = failing("http_timeout", {"o7"}, then_ok=False)
    driver.pipe("orders", order(7, 900), key="o7")
    driver.advance(10)
    [dead] = driver.dead_letters()
    assert dead.reason == "http_timeout"
    assert dead.headers[H.ERROR_TARGET] == "big" and dead.error["attempts"] == "3"
    assert orjson.loads(dead.raw_value) == {**order(7, 900), "doubled": 1800}  # what it was sent
    assert [r.value["id"] for r in sinks(driver)["http"].received] == ["o7"]  # the other: once
    assert len(driver.records("orders.copy")) == 1


def test_a_rejected_record_goes_to_the_dlq_at_once_with_the_destinations_answer(
    driver: TopologyTestDriver,
) -> None:
    headers = (("so.error.http_status", b"400"), ("so.error.http_body", b"bad amount"))
    sinks(driver)["http"]._answer = lambda r: (
        Reject("http_400", "the endpoint answered 400", headers) if r.value["id"] == "o3" else DELIVERED
    )
    driver.pipe_many("orders", [order(2), order(3), order(4)])
    [dead] = driver.dead_letters()
    assert dead.reason == "http_400: the endpoint answered 400"
    assert (
        dead.headers["so.error.http_status"] == "400" and dead.headers["so.error.http_body"] == "bad amount"
    )
    assert dead.headers[H.ERROR_TARGET] == "http" and dead.error["attempts"] == "1"
    assert driver.pending_retries() == []
    assert sorted(r.value["id"] for r in sinks(driver)["http"].received) == ["o2", "o4"]
    assert driver.stats("ship")["dead_lettered"] == {"http_400": 1}


def test_a_429_retry_waits_for_retry_after(driver: TopologyTestDriver) -> None:
    """The tier's delay is 1 s; the destination asked for 30 s: not due before then."""
    asked = {"n": 0}

    def answer(record: SinkRecord):
        asked["n"] += 1
        return Retry("http_429", driver.now_ms + 30_000) if asked["n"] == 1 else DELIVERED

    sinks(driver)["http"]._answer = answer
    driver.pipe("orders", order(5), key="o5")
    [retry] = driver.pending_retries()
    assert int(retry.headers[H.RETRY_DUE]) == T0 + 30_000
    driver.advance(29)
    assert sinks(driver)["http"].received == []
    driver.advance(2)
    assert [r.value["id"] for r in sinks(driver)["http"].received] == ["o5"]


BAD_TARGETS = [b"nosuch", b"orders.copy", b"\xff\xfe", b"http ", b"x" * 300]


@pytest.mark.parametrize("value", BAD_TARGETS, ids=[repr(v)[:20] for v in BAD_TARGETS])
def test_a_retry_naming_no_target_of_the_node_is_dead_lettered(
    driver: TopologyTestDriver, value: bytes
) -> None:
    sinks(driver)["http"]._answer = failing("http_503", {"o1"})
    driver.pipe("orders", order(1), key="o1")
    [retry] = driver.pending_retries()
    forged = [(k, value if k == H.RETRY_TARGET else v.encode()) for k, v in retry.headers.items()]
    driver.pipe(retry.topic, retry.raw_value, key=retry.raw_key, headers=forged)
    driver.advance(2)
    [dead] = driver.dead_letters()
    assert dead.reason == f"bad_header: {H.RETRY_TARGET}"
    assert dead.raw_value == retry.raw_value
    assert [r.value["id"] for r in sinks(driver)["http"].received] == ["o1"]  # the honest retry
    assert len(driver.records("orders.copy")) == 1


def test_a_retry_target_header_on_a_node_without_targets_is_dead_lettered(tmp_path: Path) -> None:
    plain = TOPOLOGY.split("      - when")[0].replace(
        ', {http: {url: "http://127.0.0.1:1/${HOOK_PATH:orders}"}}', ""
    )
    plain += "    errors:\n      retry: {delays: [1s]}\n      dlq: orders.dlq\n"
    with TopologyTestDriver(load(tmp_path, plain), schemas=tmp_path / "schemas", start_ms=T0) as d:
        d.pipe("orders.retry.1", orjson.dumps(order(1)), key="o1", headers={H.RETRY_TARGET: b"http"})
        [dead] = d.dead_letters()
        assert dead.reason == f"bad_header: {H.RETRY_TARGET}"
        assert d.records("orders.copy") == []


def lint_messages(tmp_path: Path, text: str) -> list[tuple[str, str]]:
    from stream_orch.topology.lint import lint

    return [(p.severity, p.message) for p in lint(load(tmp_path, text), tmp_path / "schemas")]


def test_lint_takes_the_example_and_names_what_is_wrong(tmp_path: Path) -> None:
    assert [m for m in lint_messages(tmp_path, TOPOLOGY) if m[0] == "error"] == []
    twice = TOPOLOGY.replace("{http: {url", "{http: {name: big, url", 1)
    assert any("a second target of the node with this name" in m for _, m in lint_messages(tmp_path, twice))
    no_retry = TOPOLOGY.replace("      retry: {delays: [1s, 5s]}\n", "")
    [problem] = [m for s, m in lint_messages(tmp_path, no_retry) if "errors.retry" in m]
    assert problem.startswith("node `ship` delivers outside Kafka but has no `errors.retry`")
    schema = TOPOLOGY.replace("name: big,", "name: big, schema: nosuch,")
    assert any("unknown schema `nosuch`" in m for _, m in lint_messages(tmp_path, schema))


def test_a_missing_environment_variable_in_the_url_is_one_line_with_its_place(tmp_path: Path) -> None:
    from stream_orch.topology.problems import SpecError

    text = TOPOLOGY.replace("${HOOK_PATH:orders}", "${HOOK_PATH}")
    with pytest.raises(SpecError) as raised:
        load(tmp_path, text)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "${HOOK_PATH}" in t)
    assert f"t.yaml:{line}:" in str(raised.value) and "HOOK_PATH is not set" in str(raised.value)


def test_a_mistake_in_a_target_is_reported_against_that_target_only(tmp_path: Path) -> None:
    from stream_orch.topology.problems import SpecError

    text = TOPOLOGY.replace(
        '{http: {name: big, url: "http://127.0.0.1:1/big"', '{http: {name: big, urll: "http://x/"'
    )
    with pytest.raises(SpecError) as raised:
        load(tmp_path, text)
    lines = str(raised.value).splitlines()
    assert len(lines) == 2, lines  # `urll` unknown, `url` missing: nothing about topics or RouteTarget
    assert "unknown key `urll`" in lines[0] or "unknown key `urll`" in lines[1]
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "urll" in t)
    assert all(f"t.yaml:{line}: nodes.ship.routes[1].to.http:" in t for t in lines)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("url", "http:///no-host", "not a URL with a host"),
        ("url", "http://host:99999/", "not a URL"),
        ("url", "http://host/a b", "no spaces"),
        ("headers", {"Bad Name": "x"}, "not an HTTP header name"),
        ("headers", {"X-Token": "a\r\nX-Evil: 1"}, "line break"),
        ("headers", {"Idempotency-Key": "mine"}, "set by the engine"),
    ],
)
def test_a_target_the_client_could_not_send_is_refused_at_load(field: str, value, message: str) -> None:
    http = {"url": "http://127.0.0.1/hook", field: value}
    with pytest.raises(Exception, match=message):
        RouteSpec.model_validate({"to": {"http": http}})


def test_graph_draws_each_target_with_its_route(tmp_path: Path) -> None:
    from stream_orch.topology.graph import build_graph, to_dot, to_mermaid

    graph = build_graph(load(tmp_path).spec)
    assert graph.targets == {"ship/http": "http: http", "ship/big": "http: big"}
    routes = {(e.dst, e.label) for e in graph.edges if e.dst.startswith("target:")}
    assert routes == {("target:ship/http", "route 1"), ("target:ship/big", "route 2: amount > 100")}
    mermaid = to_mermaid(graph)
    assert 'x1>"http: big"]' in mermaid and '-->|"route 2: amount #gt; 100"| x1' in mermaid
    assert 'x1 [label="http: big", shape="cds"' in to_dot(graph)


WINDOWED = """
topology: win
topics:
  scans: {partitions: 1, key: hub}
  scans.dlq: {partitions: 1}
tables:
  minutes: {}
nodes:
  count:
    input: scans
    steps:
      - {step: window, table: minutes, key: hub, kind: tumbling, size: 1m, aggregate: {n: count}}
    routes:
      - to: {http: {url: "http://127.0.0.1:1/counts"}}
    errors: {retry: {delays: [1s]}, dlq: scans.dlq}
"""


def test_window_results_closed_by_one_record_get_their_own_keys_and_retry_as_rendered(
    tmp_path: Path,
) -> None:
    """One record closes the windows of two hubs: two results from one input record, indexed
    0 and 1 (distinct Idempotency-Keys). A failed result is retried as it was rendered: the
    window step does not see it again (it would take the result for a scan), and it keeps its
    index, so its key."""
    from stream_orch.sinks.http import idempotency_key

    with TopologyTestDriver(load(tmp_path, WINDOWED), schemas=tmp_path / "schemas", start_ms=T0) as d:
        sink = d.nodes["count"].pipeline.sinks["http"]
        assert isinstance(sink, MemorySink)
        sink._answer = lambda r: Retry("http_503") if r.value["hub"] == "b" and r.attempt == 0 else DELIVERED
        d.pipe("scans", {"hub": "a", "ts": T0}, key="a")
        d.pipe("scans", {"hub": "b", "ts": T0 + 1}, key="b")
        d.pipe("scans", {"hub": "c", "ts": T0 + 120_000}, key="c")  # closes both windows
        d.process()
        [retry] = d.pending_retries()
        assert retry.headers[H.RETRY_TARGET] == "http" and retry.headers[H.RETRY_INDEX] == "1"
        first = [(r.value["hub"], r.value["n"], r.index, r.source) for r in sink.received]
        d.advance(2)
        got = [(r.value["hub"], r.value["n"], r.index, r.source) for r in sink.received]
        assert got[:1] == first and len(got) == 2
        (_, _, _, source_a), (hub, n, index, source_b) = got
        assert (hub, n, index) == ("b", 1, 1) and source_b == source_a  # as first rendered
        keys = {idempotency_key("win", "count", "http", [r]) for r in sink.received}
        assert len(keys) == 2 and any(k.endswith("/2.1/http") for k in keys)
        assert d.dead_letters() == []


@pytest.mark.parametrize("value", [b"x", b"-1", b"9" * 400])
def test_a_retry_index_that_is_not_a_number_is_dead_lettered(
    driver: TopologyTestDriver, value: bytes
) -> None:
    sinks(driver)["http"]._answer = failing("http_503", {"o1"})
    driver.pipe("orders", order(1), key="o1")
    [retry] = driver.pending_retries()
    forged = [(k, v.encode()) for k, v in retry.headers.items()] + [(H.RETRY_INDEX, value)]
    driver.pipe(retry.topic, retry.raw_value, key=retry.raw_key, headers=forged)
    driver.advance(2)
    [dead] = driver.dead_letters()
    assert dead.reason == f"bad_header: {H.RETRY_INDEX}"
    assert [r.value["id"] for r in sinks(driver)["http"].received] == ["o1"]  # the honest retry only


def test_a_condition_that_fails_on_a_record_dead_letters_that_record_only(driver: TopologyTestDriver) -> None:
    """`amount > 100` on a record whose amount is a string raises inside the condition: that
    record goes to the DLQ (routing_error), the others are delivered; the batch goes on."""
    driver.pipe("orders", {"id": "o1", "amount": 5}, key="o1")
    driver.pipe("orders", {"id": "o2", "amount": "12"}, key="o2")  # derive doubles it: "1212"
    driver.pipe("orders", {"id": "o3", "amount": 500}, key="o3")
    got = {name: sorted(r.value["id"] for r in s.received) for name, s in sinks(driver).items()}
    assert got == {"http": ["o1", "o3"], "big": ["o3"]}
    [dead] = driver.dead_letters()
    assert orjson.loads(dead.raw_value)["id"] == "o2" and dead.reason.startswith("routing_error")
    assert sorted(r.value["id"] for r in driver.records("orders.copy")) == ["o1", "o3"]  # none for o2


def test_the_node_path_with_a_real_http_sink(tmp_path: Path) -> None:
    """The worker's record path (the driver's NodePipeline) with the real HttpSink, against an
    aiohttp server in a thread: a 400 dead-letters the record as it was sent with the status and
    body excerpt, a 503 retries it for that target only, and the retry is delivered under the
    same Idempotency-Key without the Kafka route repeating."""
    import asyncio
    import threading

    from aiohttp import web

    from stream_orch.sinks import SinkContext
    from stream_orch.sinks.http import HttpSink
    from stream_orch.topology.models_delivery import HttpTarget

    seen: list[tuple[str, dict, int]] = []
    failed_once: set[str] = set()

    async def hook(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        key = request.headers["Idempotency-Key"]
        status = 400 if body["id"] == "o2" else 200
        if body["id"] == "o3" and key not in failed_once:
            failed_once.add(key)
            status = 503
        seen.append((key, body, status))
        return web.Response(status=status, text="no\nthanks" if status == 400 else "ok")

    loop = asyncio.new_event_loop()
    ready = threading.Event()
    runner = web.AppRunner(web.Application())
    runner.app.router.add_post("/hook", hook)

    async def serve() -> None:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        ready.set()

    thread = threading.Thread(
        target=lambda: (loop.run_until_complete(serve()), loop.run_forever()), daemon=True
    )
    thread.start()
    ready.wait(10)
    port = runner.addresses[0][1]
    try:
        with TopologyTestDriver(load(tmp_path), schemas=tmp_path / "schemas", start_ms=T0) as d:
            pipeline = d.nodes["ship"].pipeline
            target = HttpTarget(url=f"http://127.0.0.1:{port}/hook")
            sink = HttpSink(target, SinkContext("deliver", "ship", "http", "deliver.ship"))
            d._run(sink.start())
            pipeline.sinks["http"] = sink
            try:
                for i in (1, 2, 3):
                    d.pipe("orders", order(i), key=f"o{i}")
                d.advance(2)
                [dead] = d.dead_letters()
                assert orjson.loads(dead.raw_value) == {**order(2), "doubled": 20}  # as sent
                assert dead.headers["so.error.http_status"] == "400"
                assert dead.headers["so.error.http_body"] == "no thanks"
                assert dead.headers[H.ERROR_TARGET] == "http"
                tries = [(k, s) for k, b, s in seen if b["id"] == "o3"]
                assert [s for _, s in tries] == [503, 200] and tries[0][0] == tries[1][0]
                assert sorted(r.value["id"] for r in d.records("orders.copy")) == ["o1", "o2", "o3"]
                assert d.pending_retries() == []
            finally:
                d._run(sink.stop())
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
