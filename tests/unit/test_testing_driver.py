"""TopologyTestDriver: the worker's record path in memory. Chaining between nodes, retry tiers
released by the clock, dead letters with their headers, table state, partitioning as the worker."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
from aiokafka import TopicPartition

from stream_orch.runtime.batch import BatchStats
from stream_orch.runtime.output import Outbox, PartitionMap
from stream_orch.runtime.pipeline import NodePipeline
from stream_orch.testing import TopologyTestDriver
from stream_orch.testing.records import Stored, header_dict

REPO = Path(__file__).resolve().parents[2]
FRAUD = REPO / "topologies" / "fraud_detection.yaml"
SCHEMAS = REPO / "schemas"
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def profile(customer_id: object, home: str = "DE", tier: str = "low", avg: float = 100.0) -> dict:
    return {
        "customer_id": customer_id,
        "name": "Jane",
        "email": "jane@example.com",
        "home_country": home,
        "risk_tier": tier,
        "avg_amount": avg,
    }


def txn(txn_id: str, account: str = "A-1", customer: object = 123, ts: int = T0, **fields: object) -> dict:
    value = {
        "txn_id": txn_id,
        "account_id": account,
        "customer_id": customer,
        "amount": 10,
        "currency": "EUR",
        "merchant_id": "M-1",
        "channel": "atm",
        "country": "DE",
        "ts": ts,
    }
    value.update(fields)
    return value


@pytest.fixture
def driver():
    with TopologyTestDriver(FRAUD, schemas=SCHEMAS, env={"STREAM_ORCH_MASK_KEY": "s"}, start_ms=T0) as d:
        yield d


def test_records_flow_from_node_to_node_through_the_global_table(driver: TopologyTestDriver) -> None:
    driver.pipe("customers", profile(123, home="de"))
    driver.pipe("transactions", txn("t1"))
    clean = driver.records("customers.clean")
    assert [(r.key, r.value["customer_id"], r.value["home_country"]) for r in clean] == [
        ("C-000123", "C-000123", "DE")
    ]
    assert driver.lookup("customer_profiles", "C-000123")["home_country"] == "DE"
    [enriched] = driver.read("transactions.enriched")
    assert enriched.key == "A-1" and enriched.value["customer_id"] == "C-000123"
    assert enriched.value["home_country"] == "DE" and "name" not in enriched.value
    assert enriched.headers["so.node"] == "score_transactions"
    assert enriched.headers["so.src.topic"] == "transactions"
    assert enriched.headers["so.processed_at"] == str(T0)
    assert driver.read("transactions.enriched") == []  # read() returns each record once
    assert len(driver.records("transactions.enriched")) == 1
    assert driver.stats("score_transactions")["outputs"] == {
        "transactions.enriched": 1,
        "transactions.approved": 1,
    }


def test_records_are_processed_in_the_order_they_arrived(driver: TopologyTestDriver) -> None:
    # the transaction arrives before the profile: it finds no profile and waits in tier 1
    driver.pipe("transactions", txn("t1", customer=500))
    driver.pipe("customers", profile(500))
    assert driver.records("transactions.enriched") == []
    [waiting] = driver.pending_retries()
    assert waiting.topic == "transactions.retry.1" and waiting.reason == "unknown_customer"
    assert waiting.headers["so.retry.due"] == str(T0 + 1000)


def test_retry_tiers_are_released_by_the_clock(driver: TopologyTestDriver) -> None:
    driver.pipe("transactions", txn("t1", customer=500))
    driver.advance(0.999)
    assert [r.topic for r in driver.pending_retries()] == ["transactions.retry.1"]
    driver.advance(0.001)  # tier 1 is due at 1 s: read, still unknown, on to tier 2 (due 1 s + 5 s)
    [waiting] = driver.pending_retries()
    assert waiting.topic == "transactions.retry.2"
    assert waiting.headers["so.retry.due"] == str(T0 + 6000)
    assert waiting.headers["so.retry.attempt"] == "2"
    driver.pipe("customers", profile(500, home="NL"))
    driver.advance(5)
    [enriched] = driver.records("transactions.enriched")
    assert enriched.value["home_country"] == "NL"
    assert enriched.headers["so.src.topic"] == "transactions"  # where it first came from
    assert enriched.headers["so.src.offset"] == "0"
    assert driver.pending_retries() == [] and driver.dead_letters() == []
    assert driver.stats("score_transactions")["retried"] == {1: 1, 2: 1}


def test_a_long_advance_stops_at_every_due_time(driver: TopologyTestDriver) -> None:
    driver.pipe("transactions", txn("t1", customer=600))
    driver.advance(60)
    assert driver.now_ms == T0 + 60_000
    [dead] = driver.dead_letters()
    # tiers at 1 s, 1 + 5 s and 6 + 15 s: the last failure is at 21 s, not at 60 s
    assert dead.error["last_failure"] == str(T0 + 21_000)
    assert dead.error["first_failure"] == str(T0)
    assert dead.error["attempts"] == "4"


def test_dead_letters_keep_the_original_bytes_and_carry_error_headers(driver: TopologyTestDriver) -> None:
    driver.pipe("customers", profile(123))
    driver.pipe("transactions", txn("bad", amount=-5))
    driver.pipe("transactions", b'{"txn_id": ', key="A-2")
    by_key = {r.key: r for r in driver.dead_letters()}
    assert by_key["A-1"].reason == "invalid_field: amount must be > 0 (got -5.0)"
    assert by_key["A-1"].value["amount"] == -5  # the record as it came in
    assert by_key["A-2"].reason == "malformed_json"
    assert by_key["A-2"].raw_value == b'{"txn_id": ' and by_key["A-2"].value == '{"txn_id": '
    error = by_key["A-1"].error
    assert error["node"] == "score_transactions" and error["topology"] == "fraud_detection"
    assert error["topic"] == "transactions" and error["offset"] == "0" and error["attempts"] == "1"
    assert set(error) >= {"class", "message", "partition", "timestamp", "version"}
    assert "stacktrace" not in error  # only when asked for (dlq_tracebacks)
    assert driver.dead_letters("harmonise_customers") == []
    assert driver.stats("score_transactions")["dead_lettered"] == {"invalid_field": 1, "malformed_json": 1}


def test_table_state_dedupe_and_velocity(driver: TopologyTestDriver) -> None:
    driver.pipe("customers", profile(123))
    for i, second in enumerate([0, 10, 20]):
        driver.pipe("transactions", txn(f"t{i}", ts=T0 + second * 1000))
    driver.pipe("transactions", txn("t0", ts=T0 + 30_000))  # seen 30 s ago: a duplicate
    assert [r.value["velocity_60s"] for r in driver.records("transactions.enriched")] == [1, 2, 3]
    assert driver.stats("score_transactions")["dropped"] == {"duplicate": 1}
    assert driver.lookup("seen_txns", "t2") == T0 + 20_000
    assert driver.lookup("seen_txns", "nope") is None
    # velocity is kept in the partition of the account's records, as in the worker
    partition = PartitionMap({"transactions": 6}).of("transactions", b"A-1")
    assert "A-1" in driver.table("account_velocity", partition)
    assert all("A-1" not in driver.table("account_velocity", p) for p in range(6) if p != partition)
    with pytest.raises(KeyError, match="no table 'nope'"):
        driver.table("nope")


def test_expired_state_is_pruned_on_the_clock_as_in_the_worker(driver: TopologyTestDriver) -> None:
    driver.pipe("customers", profile(123))
    driver.pipe("transactions", txn("t-old"))
    driver.pipe("transactions", txn("t-new", ts=T0 + 25 * 3_600_000))  # past the 24 h horizon
    driver.advance(59)
    driver.pipe("transactions", txn("t-later", ts=T0 + 25 * 3_600_000))
    assert driver.lookup("seen_txns", "t-old") == T0  # not pruned before the minute is up
    driver.advance(1)
    driver.pipe("transactions", txn("t-last", ts=T0 + 25 * 3_600_000))  # the batch that prunes
    assert driver.lookup("seen_txns", "t-old") is None
    assert driver.lookup("seen_txns", "t-new") == T0 + 25 * 3_600_000


def test_outputs_are_partitioned_like_the_worker(driver: TopologyTestDriver) -> None:
    driver.pipe("customers", profile(123))
    accounts = [f"A-{n}" for n in range(20)]
    for account in accounts:
        driver.pipe("transactions", txn(f"t-{account}", account=account))
    partitions = PartitionMap({"transactions.enriched": 6})
    got = driver.records("transactions.enriched")
    assert sorted(r.key for r in got) == sorted(accounts)
    for record in got:
        assert record.partition == partitions.of("transactions.enriched", record.key.encode())
        assert record.headers["so.src.partition"] == str(record.partition)  # same count, same key


def test_changelogs_on_request(driver: TopologyTestDriver) -> None:
    assert driver.records("fraud_detection.seen_txns.changelog") == []  # off by default
    with TopologyTestDriver(FRAUD, schemas=SCHEMAS, start_ms=T0, changelogs=True) as d:
        d.pipe("customers", profile(123))
        d.pipe("transactions", txn("t1"))
        seen = {r.key: r.value for r in d.records("fraud_detection.seen_txns.changelog")}
        assert seen["t1"] == T0


def test_unknown_topic_and_backwards_clock(driver: TopologyTestDriver) -> None:
    with pytest.raises(KeyError, match="'transaction' is not in topology fraud_detection"):
        driver.pipe("transaction", {})
    with pytest.raises(ValueError, match="forward"):
        driver.advance(-1)


async def test_usable_from_async_tests() -> None:
    with TopologyTestDriver(FRAUD, schemas=SCHEMAS, start_ms=T0) as d:
        d.pipe("customers", profile(123))
        d.pipe("transactions", txn("t1"))
        assert len(d.records("transactions.approved")) == 1
    await asyncio.sleep(0)


def test_dead_letters_are_the_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The driver's dead letter of a record equals what the worker's failure path makes of it
    (the worker runs the node's NodePipeline inside its event loop): same key, value, timestamp
    and headers, the error's message and stack trace included. The driver used to chain its own
    'no running event loop' RuntimeError into every stack trace."""
    monkeypatch.syspath_prepend(str(REPO / "tests" / "unit"))  # step_user_functions
    (tmp_path / "t.yaml").write_text(
        "topology: same_dlq\nversion: '1'\npython_packages: [step_user_functions]\n"
        "topics: {events: {partitions: 2, key: id}, out: {partitions: 2, key: id}}\n"
        "nodes:\n  work:\n    input: events\n"
        "    steps: [{step: python, function: 'step_user_functions:add_flag'}]\n"
        "    routes: [{to: out}]\n    errors: {dlq: events.dlq}\n"
    )
    value = {"id": "a", "boom": "x"}  # add_flag raises ValueError("bad record")
    with TopologyTestDriver(tmp_path / "t.yaml", schemas=SCHEMAS, start_ms=T0, dlq_tracebacks=True) as d:
        d.pipe("events", value, timestamp=T0 - 5)
        [dead] = d.dead_letters()
        spec, schemas = d.spec, d.schemas
    partition = PartitionMap({"events": 2}).of("events", b"a")
    record = Stored("events", partition, 0, b"a", orjson.dumps(value), T0 - 5, [], 0)

    async def worker_path() -> list:
        pipeline = NodePipeline(spec, "work", schemas, {}, dlq_tracebacks=True)
        outbox = Outbox(PartitionMap({"out": 2, "events.dlq": 2}))
        await pipeline.process({TopicPartition("events", partition): [record]}, outbox, BatchStats(), T0)
        pending = [rs for task in outbox.take().values() for (t, _p), rs in task.items() if t == "events.dlq"]
        return [r for rs in pending for r in rs]

    [(key, raw, timestamp, headers)] = asyncio.run(worker_path())
    assert (dead.raw_key, dead.raw_value, dead.timestamp) == (key, raw, timestamp)
    assert dead.headers == header_dict(headers)
    assert dead.reason == "python_error: ValueError: bad record"
    assert dead.error["stacktrace"].endswith('raise ValueError("bad record")\nValueError: bad record\n')
