"""What a dead letter leaves outside the DLQ: the warning names the reason's code and the record's
coordinates, never its values (those at debug level only); the DLQ record carries the exception's
class and message, and its stack trace (absolute source paths) only when asked for."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from stream_orch.settings import Settings
from stream_orch.testing import TopologyTestDriver

KEY_ENV = {"STREAM_ORCH_MASK_KEY": "test-key"}  # the fraud topology's mask key

REPO = Path(__file__).resolve().parents[2]
FRAUD = REPO / "topologies" / "fraud_detection.yaml"
SCHEMAS = REPO / "schemas"
T0 = 1_767_225_600_000
SECRET = "4111-1111-1111-1111"


def txn(**fields: object) -> dict:
    value = {"txn_id": "t1", "account_id": "A-1", "customer_id": 123, "amount": 10, "currency": "EUR",
             "merchant_id": "M-1", "channel": "atm", "country": "DE", "ts": T0}  # fmt: skip
    return {**value, **fields}


def test_the_dead_letter_warning_carries_no_record_values(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="stream_orch")
    with TopologyTestDriver(FRAUD, schemas=SCHEMAS, env=KEY_ENV, start_ms=T0) as d:
        d.pipe("transactions", txn(amount=SECRET))
        [dead] = d.dead_letters()
    assert SECRET in dead.reason  # the DLQ record keeps the whole reason
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING and r.name.endswith("failures")]
    assert warning.getMessage() == "dead-lettered: invalid_field"
    assert (warning.node, warning.topic, warning.partition, warning.offset) == (
        "score_transactions", "transactions", dead.partition, 0,
    )  # fmt: skip
    assert not [r for r in caplog.records if r.levelno > logging.DEBUG and SECRET in r.getMessage()]
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG] == [
        f"dead-lettered: {dead.reason}"
    ]


def test_stack_traces_only_when_asked_for() -> None:
    malformed = b'{"txn_id": "t1", '
    with TopologyTestDriver(FRAUD, schemas=SCHEMAS, env=KEY_ENV, start_ms=T0) as d:
        d.pipe("transactions", malformed, key="A-1")
        [dead] = d.dead_letters()
    assert "so.error.stacktrace" not in dead.headers
    assert dead.error["class"] == "DecodeError"
    assert dead.error["message"].startswith("malformed_json: ")
    with TopologyTestDriver(
        FRAUD, schemas=SCHEMAS, env=KEY_ENV, start_ms=T0, dlq_tracebacks=True
    ) as d:
        d.pipe("transactions", malformed, key="A-1")
        [dead] = d.dead_letters()
    assert str(REPO / "stream_orch" / "codecs" / "json_codec.py") in dead.error["stacktrace"]


def test_the_setting_is_off_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STREAM_ORCH_DLQ_TRACEBACKS", raising=False)
    assert Settings().dlq_tracebacks is False
    monkeypatch.setenv("STREAM_ORCH_DLQ_TRACEBACKS", "true")
    assert Settings().dlq_tracebacks is True
