"""The reference fraud topology, rule by rule (a to i of the topology issue), on the real broker.

Expected values are worked out by hand from the rules, not computed by the code under test.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import uuid
from pathlib import Path

import orjson
import pytest
from kafka_helpers import run_cli

from stream_orch.steps.mask import hmac_sha256
from tests import reliability_harness as rh
from tests.topology_harness import (
    FRAUD_OUTPUTS,
    REPO,
    WorkerProcess,
    collect,
    free_port,
    headers_of,
    isolated_topology,
    produce_raw,
    scrape,
    wait_for_group,
)

pytestmark = pytest.mark.integration

MASK_KEY = "test-mask-key"
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MODEL = REPO / "topologies" / "models" / "fraud.onnx"


def txn(
    txn_id: str,
    account: str,
    customer: object,
    amount: object,
    currency: str,
    country: str,
    ts: object,
    channel: str = "card_present",
) -> tuple[bytes, bytes]:
    value = {
        "txn_id": txn_id,
        "account_id": account,
        "customer_id": customer,
        "amount": amount,
        "currency": currency,
        "merchant_id": "M-1",
        "channel": channel,
        "country": country,
        "ts": ts,
    }
    return account.encode(), orjson.dumps(value)


def profile(customer_id: object, key: str, home: str, tier: str, avg: float) -> tuple[bytes, bytes]:
    n = int("".join(ch for ch in str(customer_id) if ch.isdigit()))
    value = {
        "customer_id": customer_id,
        "name": f"Name {n}",
        "email": f"c{n}@example.com",
        "home_country": home,
        "risk_tier": tier,
        "avg_amount": avg,
    }
    return key.encode(), orjson.dumps(value)


@pytest.fixture
def fraud(tmp_path: Path):
    suffix = uuid.uuid4().hex[:8]
    path, names = isolated_topology(
        REPO / "topologies" / "fraud_detection.yaml",
        tmp_path,
        suffix,
        retry_delays=["300ms", "600ms", "900ms"],
    )
    names["topology"] = f"fraud_detection_{suffix}"
    group = f"fraud_detection_{suffix}.score_transactions"
    worker = WorkerProcess(
        path, tmp_path / "worker.log", env={"STREAM_ORCH_MASK_KEY": MASK_KEY}, metrics_port=free_port()
    )
    yield worker, names, group
    worker.stop()


def by_txn(records: list) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in records:
        value = orjson.loads(r.value)
        out.setdefault(value["txn_id"], []).append(value)
    return out


async def test_rules_a_to_i(fraud) -> None:
    worker, t, group = fraud
    worker.start()
    await wait_for_group(group)
    await produce_raw(
        t["customers"],
        [
            profile(123, "C-000123", "de", "low", 100.0),
            profile("C-000200", "C-000200", "DE", "high", 50.0),
            profile("C700", "C-000700", "DE", "high", 2000.0),
            profile("400", "C-000400", "GB", "low", 200.0),
        ],
    )
    assert await rh.global_table_loaded([worker.url], t["customers.clean"], 4), worker.log()
    velocity = [
        txn(f"v{i}", "A-4", 400, 10, "GBP", "GB", T0 + s * 1000)
        for i, s in enumerate([0, 5, 10, 15, 20, 25, 70], start=1)
    ]
    good = [
        txn("t-approved", "A-1", "C123", "100.50", "eur", "de", T0 // 1000),  # epoch seconds
        txn("t-usd", "A-1", "123", 100, "USD", "DE", "2026-01-01T01:00:10+01:00"),
        txn("t-alert", "A-2", "C-000200", 1000, "EUR", "US", T0),
        txn("t-critical", "A-2", 200, 12000, "GBP", "US", T0 + 1000, channel="online"),
        txn("t-review", "A-7", 700, 1500, "EUR", "FR", T0, channel="online"),
        txn("t-late", "A-5", 500, 20, "EUR", "NL", T0),
        txn("t-unknown", "A-6", 600, 20, "EUR", "NL", T0),
    ]
    invalid = {
        "missing_txn_id": (
            b"A-9",
            orjson.dumps(
                {
                    "account_id": "A-9",
                    "customer_id": 123,
                    "amount": 5,
                    "currency": "EUR",
                    "merchant_id": "M",
                    "channel": "atm",
                    "country": "DE",
                    "ts": T0,
                }
            ),
        ),
        "negative_amount": txn("bad-neg", "A-9", 123, -5, "EUR", "DE", T0),
        "text_amount": txn("bad-text", "A-9", 123, "abc", "EUR", "DE", T0),
        "unknown_currency": txn("bad-cur", "A-9", 123, 5, "XXX", "DE", T0),
        "bad_ts": txn("bad-ts", "A-9", 123, 5, "EUR", "DE", "yesterday"),
        "bad_channel": txn("bad-ch", "A-9", 123, 5, "EUR", "DE", T0, channel="teleport"),
        "bad_country": txn("bad-cty", "A-9", 123, 5, "EUR", "Germany", T0),
        "malformed_json": (b"A-9", b'{"txn_id": "bad-json", "amount": '),
        "not_utf8": (b"A-9", b'{"txn_id": "\xff\xfe"}'),
    }
    await produce_raw(t["transactions"], [*good, *velocity, *invalid.values(), good[0]])  # good[0] again: dup
    await asyncio.sleep(1.5)
    await produce_raw(t["customers"], [profile(500, "C-000500", "NL", "low", 30.0)])  # late profile

    outputs = FRAUD_OUTPUTS
    got = await collect(
        [t[o] for o in outputs],
        until=lambda s: len(s[t["transactions.enriched"]]) >= 13 and len(s[t["transactions.dlq"]]) >= 10,
        timeout=90,
        settle=2.0,
    )
    log = worker.log()
    enriched = by_txn(got[t["transactions.enriched"]])
    approved = by_txn(got[t["transactions.approved"]])
    alerts = by_txn(got[t["fraud.alerts"]])
    review = by_txn(got[t["fraud.review"]])
    actions = got[t["account.actions"]]
    dlq = got[t["transactions.dlq"]]

    # c. the duplicate is emitted once; h. every valid transaction reaches the enriched topic
    assert sorted(enriched) == sorted(
        [
            "t-approved",
            "t-usd",
            "t-alert",
            "t-critical",
            "t-review",
            "t-late",
            *[f"v{i}" for i in range(1, 8)],
        ]
    ), log
    assert all(len(v) == 1 for v in enriched.values()), {k: len(v) for k, v in enriched.items()}

    # a. harmonisation
    a = enriched["t-approved"][0]
    assert a["customer_id"] == "C-000123"
    assert a["currency"] == "EUR" and a["country"] == "DE"
    assert a["amount"] == 100.5 and a["ts"] == T0
    assert enriched["t-usd"][0]["ts"] == T0 + 10_000
    # e. amount in EUR from the topology's rates
    assert enriched["t-usd"][0]["amount_eur"] == pytest.approx(92.0)
    assert enriched["t-critical"][0]["amount_eur"] == pytest.approx(14040.0)
    # h. PII: name left out, email an HMAC-SHA256 digest under the key
    assert "name" not in a
    assert a["email"] == hmac_sha256(MASK_KEY, "c123@example.com")
    assert a["home_country"] == "DE" and a["risk_tier"] == "low"

    # f. velocity over (ts - 60 s, ts]
    assert [enriched[f"v{i}"][0]["velocity_60s"] for i in range(1, 8)] == [1, 2, 3, 4, 5, 6, 4]
    assert enriched["v6"][0]["reasons"] == ["velocity_over_5_per_minute"]
    assert enriched["v6"][0]["score"] == 0.3

    # g. scores and reasons; h. routing
    assert a["score"] == 0.0 and a["reasons"] == []
    assert enriched["t-alert"][0]["score"] == 0.8
    assert enriched["t-alert"][0]["reasons"] == [
        "amount_over_5x_average",
        "foreign_country",
        "high_risk_customer",
    ]
    assert enriched["t-critical"][0]["score"] == 0.9
    assert enriched["t-review"][0]["score"] == 0.5
    assert enriched["t-review"][0]["reasons"] == [
        "foreign_country",
        "high_risk_customer",
        "large_online_amount",
    ]
    assert sorted(alerts) == ["t-alert", "t-critical"]
    assert alerts["t-alert"][0]["severity"] == "high"
    assert alerts["t-critical"][0]["severity"] == "critical"
    assert sorted(review) == ["t-review"]
    assert sorted(approved) == sorted(["t-approved", "t-usd", "t-late", *[f"v{i}" for i in range(1, 8)]])
    assert sorted(orjson.loads(r.value)["txn_id"] for r in actions) == ["t-alert", "t-critical"]
    for r in actions:
        assert r.key == b"A-2"
        assert orjson.loads(r.value)["action"] == "freeze"

    # d. the late profile made it through the retry tiers; the missing one ended in the DLQ
    assert enriched["t-late"][0]["home_country"] == "NL"
    reasons = {}
    for r in dlq:
        h = headers_of(r)
        reasons.setdefault(h["so.error.reason"].split(":")[0], []).append(r)
    unknown = reasons["unknown_customer"]
    assert len(unknown) == 1
    uh = headers_of(unknown[0])
    assert uh["so.error.attempts"] == "4" and uh["so.error.topic"] == t["transactions"]
    assert orjson.loads(unknown[0].value)["txn_id"] == "t-unknown"

    # b. every invalid record is in the DLQ with its original bytes and a reason
    dlq_values = {r.value for r in dlq}
    for name, (_key, raw) in invalid.items():
        assert raw in dlq_values, f"{name} missing from the DLQ\n{log}"
    by_value = {r.value: headers_of(r) for r in dlq}
    assert by_value[invalid["malformed_json"][1]]["so.error.reason"] == "malformed_json"
    assert by_value[invalid["not_utf8"][1]]["so.error.reason"] == "invalid_utf8"
    assert "amount" in by_value[invalid["negative_amount"][1]]["so.error.reason"]
    assert "currency" in by_value[invalid["unknown_currency"][1]]["so.error.reason"]
    assert "ts" in by_value[invalid["bad_ts"][1]]["so.error.reason"]
    assert "country" in by_value[invalid["bad_country"][1]]["so.error.reason"]
    assert "txn_id" in by_value[invalid["missing_txn_id"][1]]["so.error.reason"]
    for h in by_value.values():
        for name in (
            "so.error.class",
            "so.error.node",
            "so.error.topology",
            "so.error.partition",
            "so.error.offset",
            "so.error.first_failure",
            "so.error.last_failure",
        ):
            assert name in h

    # i. lineage headers on every output
    for r in got[t["transactions.enriched"]] + got[t["fraud.alerts"]]:
        h = headers_of(r)
        assert h["so.topology"] == t["topology"]
        assert h["so.version"] == "1.0.0"
        assert h["so.node"] == "score_transactions"
        assert h["so.src.topic"] == t["transactions"]
        assert int(h["so.src.partition"]) >= 0 and int(h["so.src.offset"]) >= 0
        assert int(h["so.processed_at"]) > T0
        # the model step's lineage: its name, the file's version and the first 12 hex of its SHA-256
        assert (h["so.model.name"], h["so.model.version"]) == ("fraud", "1")
        assert h["so.model.sha256"] == hashlib.sha256(MODEL.read_bytes()).hexdigest()[:12]
    # g1. the model's probability, a float in [0, 1], on every enriched record
    assert all(0.0 <= r["fraud_probability"] <= 1.0 for rs in enriched.values() for r in rs)

    assert worker.terminate() == 0


def _damage(state_dir: Path, how: str) -> None:
    stores = state_dir / "stores"
    if how == "deleted":
        shutil.rmtree(stores)
    elif how == "corrupt":
        found = list(stores.rglob("CURRENT"))
        assert found, f"no RocksDB store under {stores}"
        for current in found:  # the file naming the live manifest: garbage
            current.write_text("not-a-manifest\n")


@pytest.mark.parametrize("local_state", ["stopped", "kept", "deleted", "corrupt"])
async def test_state_survives_a_killed_worker(fraud, local_state: str) -> None:
    """Velocity and dedupe state come back after kill -9: from the local stores (only the
    changelog's tail after their checkpoint is read; the stores write no WAL, so what a kill
    keeps is what was flushed, here nothing yet), or, with the stores deleted or corrupt, in full
    from the changelogs. A clean stop (``stopped``) flushes them: its restart reads nothing."""
    worker, t, group = fraud
    token = {"STREAM_ORCH_HTTP_TOKEN": f"ops-{uuid.uuid4().hex}"}  # for /tables, served at the end
    worker.env.update(token, STREAM_ORCH_TABLES_ENDPOINT="true")
    worker.start()
    await wait_for_group(group)
    await produce_raw(t["customers"], [profile(400, "C-000400", "GB", "low", 200.0)])
    assert await rh.global_table_loaded([worker.url], t["customers.clean"], 1), worker.log()
    before = [txn(f"r{i}", "A-8", 400, 10, "GBP", "GB", T0 + i * 10_000) for i in range(3)]
    await produce_raw(t["transactions"], before)
    enriched = t["transactions.enriched"]
    await collect([enriched], until=lambda s: len(s[enriched]) >= 3, timeout=60, settle=0)
    await asyncio.sleep(1.5)  # let the batch's changelog writes and commit finish
    if local_state == "stopped":
        assert worker.terminate() == 0
    else:
        worker.kill()
        _damage(worker.state_dir, local_state)

    worker.start()
    after = [txn(f"r{i}", "A-8", 400, 10, "GBP", "GB", T0 + i * 10_000) for i in range(3, 6)]
    await produce_raw(t["transactions"], [*after, before[0]])  # before[0] again: a duplicate
    got = await collect([enriched], until=lambda s: len(s[enriched]) >= 6, timeout=90, settle=3.0)
    out = by_txn(got[enriched])
    assert sorted(out) == [f"r{i}" for i in range(6)], worker.log()
    assert len(out["r0"]) == 1, "the duplicate was emitted again after the restart"
    assert [out[f"r{i}"][0]["velocity_60s"] for i in range(6)] == [1, 2, 3, 4, 5, 6]
    metrics = await scrape(worker.url)

    def table(name: str, table: str) -> float:
        return metrics[(name, (("node", "score_transactions"), ("table", table)))]

    # what the restart read from the changelogs: nothing after a clean stop; else at most (after
    # a kill with the stores kept: what they had not flushed) r0..r2 in the dedupe table (their
    # time-index entries are local, rebuilt from them), and account A-8's velocity window
    if local_state == "stopped":
        assert table("stream_orch_table_restored_records_total", "seen_txns") == 0
        assert table("stream_orch_table_restored_records_total", "account_velocity") == 0
    elif local_state == "kept":
        assert table("stream_orch_table_restored_records_total", "seen_txns") <= 3
    else:
        assert table("stream_orch_table_restored_records_total", "seen_txns") == 3  # the ids only
        assert table("stream_orch_table_restored_records_total", "account_velocity") >= 1
    if local_state == "corrupt":
        assert "cannot be trusted, rebuilding it from the changelog" in worker.log()

    # ops can look inside, with the worker's token: per partition keys and checkpoint, and one
    # key's value; without it the worker refuses and the command says so in one line
    code, out, err = await run_cli("table", "stats", "--url", worker.url)
    assert code == 2 and "refused" in err and err.count("\n") == 1, (code, out, err)
    code, out, err = await run_cli("--metrics-port", str(worker.metrics_port), "table", "stats", env=token)
    assert code == 0, err
    stats = orjson.loads(out)
    seen = stats["seen_txns"]["partitions"]
    assert sum(p["keys"] for p in seen.values()) >= 6  # r0..r5 and their time-index entries
    assert all(p["checkpoint"] is not None for p in seen.values() if p["keys"])
    code, out, err = await run_cli("table", "get", "account_velocity", "A-8", "--url", worker.url, env=token)
    assert code == 0, err
    assert len(orjson.loads(out)["value"]["e"]) == 6
    code, out, _ = await run_cli(
        "table", "get", "account_velocity", "A-nobody", "--url", worker.url, env=token
    )
    assert code == 1 and orjson.loads(out)["value"] is None
    assert table("stream_orch_table_restore_remaining_records", "seen_txns") == 0
    assert table("stream_orch_table_recovering", "seen_txns") == 0
    assert worker.terminate() == 0
