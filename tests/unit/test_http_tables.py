"""The worker's HTTP server as a trust boundary (issue 19, item 1): loopback by default, /tables off
unless enabled, then only with the bearer token from the environment, and table values masked as
the topology's `mask` steps say."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from stream_orch.cli.main import _parser, main, settings_from_args
from stream_orch.errors import UserError
from stream_orch.observability.http import serve
from stream_orch.observability.metrics import Metrics
from stream_orch.runtime.inspect import MASKED, PiiMask, TableInspector
from stream_orch.settings import Settings
from stream_orch.topology.models import TopologySpec

REPO = Path(__file__).resolve().parents[2]
TOKEN = "s3cret-token-for-tests"


@pytest.fixture(autouse=True)
def _no_http_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("METRICS_HOST", "TABLES_ENDPOINT", "HTTP_TOKEN"):
        monkeypatch.delenv(f"STREAM_ORCH_{name}", raising=False)


# ------------------------------------------------------------------ settings and flags


def test_the_worker_binds_loopback_by_default() -> None:
    assert Settings().metrics_host == "127.0.0.1"


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "t.yaml", "--metrics-host", "0.0.0.0"],
        ["--metrics-host", "0.0.0.0", "run", "t.yaml"],
        ["--metrics-host", "0.0.0.0", "lag"],
    ],
)
def test_metrics_host_flag_wherever_metrics_port_is(argv: list[str]) -> None:
    assert settings_from_args(_parser().parse_args(argv)).metrics_host == "0.0.0.0"


def test_tables_are_off_by_default_and_serve_tables_turns_them_on() -> None:
    assert Settings().tables_endpoint is False
    args = _parser().parse_args(["run", "t.yaml", "--serve-tables"])
    assert settings_from_args(args).tables_endpoint is True


def test_every_endpoint_is_named_in_the_setting_descriptions() -> None:
    fields = Settings.model_fields
    text = " ".join(fields[f].description or "" for f in ("metrics_host", "metrics_port", "tables_endpoint"))
    for path in ("/metrics", "/health", "/ready", "/tables", "/tables/<name>/<key>"):
        assert path in text, path


def test_the_token_comes_from_the_environment_only_and_never_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SystemExit):  # no flag for it: argparse refuses
        _parser().parse_args(["run", "t.yaml", "--http-token", TOKEN])
    monkeypatch.setenv("STREAM_ORCH_HTTP_TOKEN", TOKEN)
    settings = Settings(tables_endpoint=True)
    assert settings.tables_token() == TOKEN
    assert TOKEN not in repr(settings) and TOKEN not in str(settings.redacted())


@pytest.mark.parametrize("token", [None, "", "   "])
def test_tables_on_without_a_token_is_one_line(monkeypatch: pytest.MonkeyPatch, token: str | None) -> None:
    if token is not None:
        monkeypatch.setenv("STREAM_ORCH_HTTP_TOKEN", token)
    assert Settings().tables_token() is None  # off: no token needed
    with pytest.raises(UserError) as err:
        Settings(tables_endpoint=True).tables_token()
    message = str(err.value)
    assert "STREAM_ORCH_HTTP_TOKEN" in message and "--serve-tables" in message and "\n" not in message


@pytest.fixture
def _root_logging() -> Iterator[None]:
    """`run` configures the root logger on the test's captured stderr: undone afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("_root_logging")
def test_run_serve_tables_without_token_fails_at_start(capsys: pytest.CaptureFixture[str]) -> None:
    topology = str(REPO / "topologies" / "fraud_detection.yaml")
    code = main(["--bootstrap-servers", "127.0.0.1:1", "run", topology, "--serve-tables"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "STREAM_ORCH_HTTP_TOKEN" in err and "\n" not in err and "Traceback" not in err


# ------------------------------------------------------------------ the server


class FakeTable:
    """What TableInspector reads of a LocalTable."""

    def __init__(self, name: str, rows: dict[str, Any]) -> None:
        self.name, self.changelog, self.rows = name, f"t.{name}.changelog", rows

    def partitions(self) -> set[int]:
        return {0}

    def get(self, key: str, partition: int, default: Any = None) -> Any:
        return self.rows.get(key, default)

    def partition_stats(self, partition: int) -> dict[str, Any]:
        return {"keys": len(self.rows), "bytes_on_disk": 0, "checkpoint": 3}


def _spec(steps: list[dict[str, Any]], tables: tuple[str, ...] = ("pending",)) -> TopologySpec:
    return TopologySpec.model_validate(
        {
            "topology": "t",
            "topics": {"a": {}, "b": {}, "out": {}},
            "tables": {name: {} for name in tables},
            "nodes": {"n": {"input": "a", "steps": steps, "routes": [{"to": "out"}]}},
        }
    )


JOIN = {"step": "join", "topic": "b", "table": "pending", "key": "order_id"}
MASK = {"step": "mask", "fields": {"email": "hash", "name": "drop"}}
STORED = {"v": {"order_id": "O-1", "email": "ann@example.com", "name": "Ann", "amount": 5}, "m": False}


def _inspector(rows: dict[str, Any], spec: TopologySpec | None = None) -> TableInspector:
    table = FakeTable("pending", rows)
    return TableInspector(lambda: [("n", table)], mask=PiiMask.of(spec or _spec([JOIN, MASK])))


async def _get(url: str, token: str | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with aiohttp.ClientSession() as s, s.get(url, headers=headers) as resp:
        body = await resp.json() if resp.content_type == "application/json" else await resp.text()
        return resp.status, body


async def test_without_tables_the_server_serves_no_table_data() -> None:
    server = await serve(Metrics(), None, "127.0.0.1", 0)
    try:
        for path in ("/tables", "/tables/pending/k"):
            status, body = await _get(server.url + path, TOKEN)
            assert status == 404 and "ann@" not in str(body)
        status, body = await _get(server.url + "/")
        assert "/tables" not in body
    finally:
        await server.stop()


async def test_tables_are_never_served_without_a_token() -> None:
    for token in (None, ""):
        with pytest.raises(ValueError, match="token"):
            await serve(Metrics(), None, "127.0.0.1", 0, tables=_inspector({"k": STORED}), token=token)


async def test_tables_need_the_bearer_token_and_probes_stay_open(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    server = await serve(Metrics(), None, "127.0.0.1", 0, tables=_inspector({"k": STORED}), token=TOKEN)
    try:
        for path in ("/tables", "/tables/pending/k"):
            for wrong in (None, "", "nope", TOKEN[:-1], TOKEN + "x", TOKEN.upper()):
                status, body = await _get(server.url + path, wrong)
                assert status == 401, (path, wrong)
                assert "ann@" not in str(body) and "partitions" not in str(body)
            async with (
                aiohttp.ClientSession() as s,
                s.get(server.url + path, headers={"Authorization": f"Basic {TOKEN}"}) as resp,
            ):
                assert resp.status == 401
                assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        status, body = await _get(server.url + "/tables", TOKEN)
        assert status == 200 and body["pending"]["partitions"]["0"]["keys"] == 1
        status, body = await _get(server.url + "/tables/pending/k", TOKEN)
        assert status == 200 and body["value"]["v"]["order_id"] == "O-1"
        for path in ("/metrics", "/health", "/ready"):
            assert (await _get(server.url + path))[0] == 200, path
    finally:
        await server.stop()
    assert TOKEN not in caplog.text


# ------------------------------------------------------------------ masking


def test_fields_of_mask_steps_are_masked_at_any_depth() -> None:
    found = _inspector({"k": STORED}).lookup("pending", "k")
    assert found is not None
    assert found["value"] == {
        "v": {"order_id": "O-1", "email": MASKED, "name": MASKED, "amount": 5},
        "m": False,
    }
    assert STORED["v"]["email"] == "ann@example.com"  # the table's own value is left alone
    nested = {"v": [{"contact": {"email": "x@y", "tags": ["a"]}}], "email": None}
    found = _inspector({"k": nested}).lookup("pending", "k")
    assert found is not None and found["value"] == {
        "v": [{"contact": {"email": MASKED, "tags": ["a"]}}],
        "email": MASKED,
    }


def test_a_mask_step_in_any_node_masks_every_table() -> None:
    spec = TopologySpec.model_validate(
        {
            "topology": "t",
            "topics": {"a": {}, "b": {}, "c": {}, "out": {}},
            "tables": {"pending": {}},
            "nodes": {
                "n": {"input": "a", "steps": [JOIN], "routes": [{"to": "out"}]},
                "m": {"input": "c", "steps": [MASK], "routes": [{"to": "out"}]},
            },
        }
    )
    found = _inspector({"k": STORED}, spec).lookup("pending", "k")
    assert found is not None and found["value"]["v"]["email"] == MASKED


@pytest.mark.parametrize(
    "step",
    [
        {"step": "window", "table": "pending", "key": "email", "kind": "tumbling", "size": "1m", "as": "n"},
        {
            "step": "window",
            "table": "pending",
            "key": "k",
            "kind": "tumbling",
            "size": "1m",
            "as": "n",
            "function": "collect",
            "field": "name",
        },
        {"step": "aggregate", "table": "pending", "key": "email", "window": "1m", "as": "n"},
        {"step": "dedupe", "table": "pending", "field": "email", "horizon": "1h"},
    ],
)
def test_a_table_keyed_or_fed_by_a_pii_field_is_masked_whole(step: dict[str, Any]) -> None:
    """Such a table stores PII values under names of its own (a window's `k`, collected values)."""
    found = _inspector({"k": {"k": "ann@example.com", "w": [[0, 1, 1, "Ann"]]}}, _spec([step, MASK]))
    value = found.lookup("pending", "k")
    assert value is not None and value["value"] == MASKED


def test_without_mask_steps_values_are_served_as_stored() -> None:
    found = _inspector({"k": STORED}, _spec([JOIN])).lookup("pending", "k")
    assert found is not None and found["value"] == STORED
    missing = _inspector({}).lookup("pending", "nobody")
    assert missing is not None and missing["value"] is None and missing["partition"] is None


# ------------------------------------------------------------------ stream-orch table


@pytest.fixture
def served_in_a_thread() -> Iterator[Callable[..., str]]:
    """Starts servers on a loop of their own (``main`` runs its own loop); yields their URL."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    servers = []

    def start(**kwargs: Any) -> str:
        server = asyncio.run_coroutine_threadsafe(serve(Metrics(), None, "127.0.0.1", 0, **kwargs), loop)
        servers.append(server.result(10))
        return servers[-1].url

    yield start
    for server in servers:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def test_table_command_sends_the_token_and_says_in_one_line_when_refused(
    served_in_a_thread: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    off = served_in_a_thread()
    on = served_in_a_thread(tables=_inspector({"k": STORED}), token=TOKEN)
    cases = [
        (off, None, 1, "table endpoints are off"),
        (on, None, 2, "set STREAM_ORCH_HTTP_TOKEN"),
        (on, "wrong", 2, "wrong token in STREAM_ORCH_HTTP_TOKEN"),
    ]
    for url, token, code, says in cases:
        if token is None:
            monkeypatch.delenv("STREAM_ORCH_HTTP_TOKEN", raising=False)
        else:
            monkeypatch.setenv("STREAM_ORCH_HTTP_TOKEN", token)
        assert main(["table", "get", "pending", "k", "--url", url]) == code, url
        out, err = capsys.readouterr()
        assert out == "" and says in err and err.count("\n") == 1, err
    monkeypatch.setenv("STREAM_ORCH_HTTP_TOKEN", TOKEN)
    assert main(["table", "get", "pending", "k", "--url", on]) == 0
    out, err = capsys.readouterr()
    assert '"email":"<masked>"' in out and "ann@" not in out
