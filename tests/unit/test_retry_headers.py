"""Retry records carry where they first came from in ``so.error.*`` headers and when they are due
in ``so.retry.due``. Anyone who can write to a retry topic can set those: a header that is not
what the engine writes sends its record to the DLQ with ``bad_header: <name>`` (its bytes kept),
and never stops, loops or stalls the partition. Through the worker's own decode path (the test
driver runs the node's ``NodePipeline``)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from stream_orch.reliability import headers as H
from stream_orch.testing import TopologyTestDriver
from stream_orch.testing.records import OutputRecord

KEY_ENV = {"STREAM_ORCH_MASK_KEY": "test-key"}  # the fraud topology's mask key

REPO = Path(__file__).resolve().parents[2]
FRAUD = REPO / "topologies" / "fraud_detection.yaml"
SCHEMAS = REPO / "schemas"
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
RETRY = "transactions.retry.1"


def txn(txn_id: str, customer: int = 500) -> dict:
    return {
        "txn_id": txn_id,
        "account_id": "A-1",
        "customer_id": customer,
        "amount": 10,
        "currency": "EUR",
        "merchant_id": "M-1",
        "channel": "atm",
        "country": "DE",
        "ts": T0,
    }


def profile(customer_id: int) -> dict:
    return {
        "customer_id": customer_id,
        "name": "Jane",
        "email": "jane@example.com",
        "home_country": "DE",
        "risk_tier": "low",
        "avg_amount": 100.0,
    }


@pytest.fixture
def driver():
    with TopologyTestDriver(FRAUD, schemas=SCHEMAS, env=KEY_ENV, start_ms=T0) as d:
        yield d


def honest_retry(driver: TopologyTestDriver) -> OutputRecord:
    """A retry record as the engine writes it: a transaction of a customer not known yet."""
    driver.pipe("transactions", txn("t0"))
    [retry] = driver.pending_retries()
    assert retry.topic == RETRY
    return retry


BAD = [
    (H.ERROR_PARTITION, b"abc"),
    (H.ERROR_PARTITION, b"-1"),
    (H.ERROR_PARTITION, b"\xff\xfe"),
    (H.ERROR_PARTITION, b"9" * 400),  # int() takes it; the lineage prefix cache would grow with it
    (H.ERROR_PARTITION, "other"),  # a number, but not the partition the retry is on
    (H.ERROR_OFFSET, b"12x"),
    (H.ERROR_OFFSET, b" 1_000"),  # int() would take it
    (H.ERROR_OFFSET, "\u0661\u0662".encode()),  # Arabic-Indic digits: int() would take them too
    (H.ERROR_OFFSET, b"99999999999999999999"),  # beyond a Kafka offset (int64)
    (H.ERROR_TIMESTAMP, b"yesterday"),
    (H.ERROR_TIMESTAMP, str(T0 + 7_200_000).encode()),  # later than the record itself: the broker
    # refuses to store outputs that far ahead (InvalidTimestamp), and the batch would fail for ever
    (H.ERROR_FIRST_FAILURE, b"1.5e12"),
    (H.ERROR_TOPIC, b"somebody.elses.topic"),  # not a topic this node reads
    (H.RETRY_DUE, b"soon"),
    (H.RETRY_DUE, b"9" * 400),  # it used to overflow the worker's pause timer: a failed batch, for ever
]


@pytest.mark.parametrize(("name", "value"), BAD, ids=[f"{n}={v!r}"[:60] for n, v in BAD])
def test_a_retry_with_a_bad_header_is_dead_lettered_and_the_partition_goes_on(
    driver: TopologyTestDriver, name: str, value: bytes | str
) -> None:
    retry = honest_retry(driver)
    if value == "other":
        value = str((retry.partition + 1) % 6).encode()
    forged = [(k, value if k == name else v) for k, v in retry.headers.items()]
    driver.pipe(RETRY, retry.raw_value, key=retry.raw_key, headers=forged)
    driver.pipe(RETRY, orjson.dumps(txn("after")), key=retry.raw_key, headers=retry.headers)
    driver.pipe("customers", profile(500))
    driver.advance(60)
    [dead] = driver.dead_letters()
    assert dead.reason == f"bad_header: {name}"
    assert dead.error["class"] == "DecodeError"
    assert dead.raw_value == retry.raw_value and dead.raw_key == retry.raw_key  # its bytes, kept
    # the dead letter points at the forged record itself, not where the forgery says it is from
    assert dead.error["topic"] == RETRY
    assert dead.error["partition"] == str(retry.partition)
    enriched = sorted(r.value["txn_id"] for r in driver.records("transactions.enriched"))
    assert enriched == ["after", "t0"]  # the records around it are processed
    assert driver.pending_retries() == []
    assert driver.stats("score_transactions")["dead_lettered"] == {"bad_header": 1}


def test_absent_or_empty_origin_headers_are_the_records_own_coordinates(driver: TopologyTestDriver) -> None:
    driver.pipe("customers", profile(500))
    driver.pipe(RETRY, orjson.dumps(txn("bare")), key="A-1", headers={H.ERROR_OFFSET: b""})
    [out] = driver.records("transactions.enriched")
    assert out.headers["so.src.topic"] == RETRY and out.headers["so.src.offset"] == "0"
    assert driver.dead_letters() == []


def test_a_due_time_no_tier_waits_for_does_not_hold_the_partition(driver: TopologyTestDriver) -> None:
    """A tier waits at most its node's longest delay (here 15 s): a due time further ahead is
    not the engine's (or comes from a clock far ahead) and is due at once."""
    retry = honest_retry(driver)
    forged = {**retry.headers, H.RETRY_DUE: str(T0 + 10**12)}
    driver.pipe("customers", profile(500))
    driver.pipe(RETRY, orjson.dumps(txn("early")), key=retry.raw_key, headers=forged)
    driver.advance(1)  # the honest retry falls due after 1 s
    assert sorted(r.value["txn_id"] for r in driver.records("transactions.enriched")) == ["early", "t0"]
    assert driver.dead_letters() == [] and driver.pending_retries() == []


def test_retry_due_reads_only_what_the_engine_writes() -> None:
    def due(value: bytes | None) -> int:
        return H.retry_due([] if value is None else [(H.RETRY_DUE, value)], now=1000, longest_wait_ms=500)

    assert due(b"1400") == 1400
    assert due(b"1500") == 1500  # the longest wait itself
    assert due(b"1501") == 1000  # further: due now
    assert due(None) == due(b"") == due(b"x") == due(b"-5") == due(b"\xff") == 0
    assert due(b"9" * 400) == 0  # not a number as the engine writes one
    assert due(b"99999999999999") == 1000
