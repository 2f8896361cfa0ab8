"""record -> Alertmanager alert, as `stream-orch alerts forward` builds it (no broker, no HTTP)."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import orjson
import pytest
from aiokafka.structs import ConsumerRecord
from topology_harness import free_port

from stream_orch.cli import alerts as cli_alerts
from stream_orch.cli.main import main
from stream_orch.tools.alerts import (
    ForwardConfig,
    ForwardStats,
    SkipRecord,
    Stopped,
    default_alertname,
    post_alerts,
    record_to_alert,
)

NOW = 1_700_000_000.0


def rec(
    value: object, key: bytes | None = b"A-1", offset: int = 7, raw: bytes | None = None
) -> ConsumerRecord:
    body = raw if raw is not None else orjson.dumps(value)
    return ConsumerRecord("fraud.alerts", 2, offset, int((NOW - 60) * 1000), 0, key, body, None, 0, 0, [])


FRAUD = {
    "txn_id": "t-1",
    "account_id": "A-1",
    "customer_id": "C-000001",
    "score": 0.97,
    "severity": "critical",
}


def cfg(**kw: object) -> ForwardConfig:
    return ForwardConfig(topic="fraud.alerts", alertmanager="http://am:9093/", **kw)  # type: ignore[arg-type]


def test_labels_severity_key_and_times() -> None:
    alert = record_to_alert(
        rec(FRAUD),
        cfg(
            label_fields=("account_id", "missing"),
            key_field="txn_id",
            static_labels={"topology": "fraud_detection"},
        ),
        now=NOW,
    )
    assert alert["labels"] == {
        "alertname": "FraudAlerts",
        "topic": "fraud.alerts",
        "topology": "fraud_detection",
        "account_id": "A-1",
        "severity": "critical",
        "alert_key": "t-1",
    }
    assert alert["startsAt"] == "2023-11-14T22:12:20.000Z"  # the record's timestamp
    assert alert["endsAt"] == "2023-11-14T23:13:20.000Z"  # posting time + 1h
    assert alert["annotations"]["kafka_record"] == "fraud.alerts/2@7"
    assert orjson.loads(alert["annotations"]["description"]) == FRAUD


def test_severity_map_default_and_passthrough() -> None:
    sev = lambda value, **kw: record_to_alert(rec({**FRAUD, "severity": value}), cfg(**kw), now=NOW)[  # noqa: E731
        "labels"
    ]["severity"]
    assert sev("high") == "warning"
    assert sev("CRITICAL") == "critical"
    assert sev("info") == "info"
    assert sev(None) == "warning"
    assert sev("high", severity_map={"high": "critical"}) == "critical"


def test_key_defaults_to_the_record_key_then_the_offset() -> None:
    assert record_to_alert(rec(FRAUD), cfg(), now=NOW)["labels"]["alert_key"] == "A-1"
    assert record_to_alert(rec(FRAUD, key=None), cfg(), now=NOW)["labels"]["alert_key"] == "fraud.alerts/2/7"
    no_field = {k: v for k, v in FRAUD.items() if k != "txn_id"}
    assert record_to_alert(rec(no_field), cfg(key_field="txn_id"), now=NOW)["labels"]["alert_key"] == (
        "fraud.alerts/2/7"
    )


def test_summary_template_and_a_bad_one_falls_back() -> None:
    good = record_to_alert(rec(FRAUD), cfg(summary="{severity} on {account_id}: {score}"), now=NOW)
    assert good["annotations"]["summary"] == "critical on A-1: 0.97"
    bad = record_to_alert(rec(FRAUD), cfg(summary="{nope}"), now=NOW)
    assert bad["annotations"]["summary"] == "FraudAlerts A-1 (critical)"


def test_records_that_are_not_json_objects_are_skipped() -> None:
    with pytest.raises(SkipRecord):
        record_to_alert(rec(None, raw=b"not json"), cfg(), now=NOW)
    with pytest.raises(SkipRecord):
        record_to_alert(rec([1, 2]), cfg(), now=NOW)


def test_config_checks() -> None:
    assert default_alertname("fraud.alerts") == "FraudAlerts"
    assert cfg().group == "stream-orch-alerts.fraud.alerts"
    assert cfg().url == "http://am:9093/api/v2/alerts"
    with pytest.raises(ValueError, match="not a valid"):
        cfg(label_fields=("bad-name",))
    with pytest.raises(ValueError, match="set by the bridge"):
        cfg(static_labels={"severity": "x"})


def test_cli_refuses_bad_arguments_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["alerts", "forward", "--topic", "t", "--alertmanager", "http://x", "--label", "oops"])
    assert rc == 2
    assert capsys.readouterr().err == "stream-orch: error: --label: expected NAME=VALUE, got 'oops'\n"


async def test_an_unreachable_alertmanager_is_logged_without_credentials(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The retry warning names the URL, never its user:password@ or a token parameter."""
    stop = asyncio.Event()

    class StopAfterOneWarning(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            stop.set()

    url = f"http://alice:s3cret@127.0.0.1:{free_port()}/api/v2/alerts?token=t0ken"
    watcher = StopAfterOneWarning(logging.WARNING)
    logging.getLogger("stream_orch.tools.alerts").addHandler(watcher)
    try:
        async with aiohttp.ClientSession() as http:
            with caplog.at_level(logging.WARNING), pytest.raises(Stopped):
                await post_alerts(http, url, [{"labels": {}}], stop=stop)
    finally:
        logging.getLogger("stream_orch.tools.alerts").removeHandler(watcher)
    [line] = [r.getMessage() for r in caplog.records if r.name == "stream_orch.tools.alerts"]
    assert "cannot reach alertmanager at http://***@127.0.0.1:" in line, line
    assert "s3cret" not in line and "t0ken" not in line and "alice" not in line, line


def test_forward_says_where_it_posts_without_credentials(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def no_kafka(settings: object, cfg: ForwardConfig, stop: object) -> ForwardStats:
        return ForwardStats()

    monkeypatch.setattr(cli_alerts, "forward", no_kafka)
    rc = main(["alerts", "forward", "--topic", "t", "--alertmanager", "https://bob:pa55@am.example:9093/"])
    out = capsys.readouterr().out
    assert rc == 0 and "to https://***@am.example:9093/api/v2/alerts as T" in out, out
    assert "pa55" not in out and "bob" not in out
