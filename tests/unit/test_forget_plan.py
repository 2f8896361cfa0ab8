"""`stream-orch forget` without Kafka: which tables an erasure chooses (by the key field's name,
nothing else), and which keys of each step's table layout are the subject's. The layouts are
checked against the steps themselves: a topology runs in the test driver twice, with and without
one subject's records, and the keys only the first run has are exactly those the matcher picks,
for keys that share a prefix with another subject's, hold a separator, or fill chunks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stream_orch.errors import UserError
from stream_orch.steps.subject_keys import subject_matcher
from stream_orch.testing.driver import TopologyTestDriver
from stream_orch.tools.forget.plan import CHANGELOG, FEED, parse_subject, plan, render, subject_digest
from stream_orch.topology.loader import load_topology
from stream_orch.topology.models import TopologySpec

REPO = Path(__file__).resolve().parents[2]
T0 = 1767225600000 + 3_600_000

LAYOUTS = """\
topology: layouts
topics:
  events: {partitions: 2, key: user_id}
  others: {partitions: 2, key: user_id}
  out: {partitions: 2, key: user_id}
  out2: {partitions: 2, key: user_id}
tables:
  d: {description: dedupe by user}
  a: {description: sliding count by user}
  w: {description: tumbling windows by user}
  j: {description: join buffer by user}
  s: {description: sessions by user}
  ids: {description: dedupe by event id}
nodes:
  first:
    input: events
    steps:
      - {step: dedupe, field: event_id, table: ids, horizon: 1h}
      - {step: dedupe, field: user_id, table: d, horizon: 1s}
      - {step: aggregate, table: a, key: user_id, window: 1h, function: count, as: n}
      - {step: window, table: w, key: user_id, kind: tumbling, size: 1d, function: count, as: total}
    routes:
      - to: out
  second:
    input: events
    steps:
      - {step: join, topic: others, table: j, key: user_id, after: 1h, before: 1h}
      - {step: window, table: s, key: user_id, kind: session, gap: 1h, function: count, as: total}
    routes:
      - to: out2
"""

SUBJECT = "u1"
# u10 starts with the subject's text; the others hold a separator of the layouts (US, RS)
OTHERS = ["u10", "u2", "u1\x1fx", "x\x1eu1"]


def _spec(tmp_path: Path) -> TopologySpec:
    path = tmp_path / "layouts.yaml"
    path.write_text(LAYOUTS)
    return load_topology(path).spec


def _run(spec: TopologySpec, users: list[str]) -> dict[str, set[str]]:
    driver = TopologyTestDriver(spec, schemas=REPO / "schemas", start_ms=T0)
    try:
        for user in users:
            i = [SUBJECT, *OTHERS].index(user)  # the same times whoever else is there
            # 300 events for the subject: the aggregate keeps them in chunks of 256
            for n in range(300 if user == SUBJECT else 3):
                driver.pipe("events", {"event_id": f"{user}-{n}", "user_id": user, "ts": T0 + n * 2000 + i})
            driver.pipe("others", {"user_id": user, "ts": T0 + 5000 + i})
        return {t: set(driver.table(t)) for t in ("d", "a", "w", "j", "s", "ids")}
    finally:
        driver.close()


def _step(spec: TopologySpec, table: str) -> Any:
    return next(s for n in spec.nodes.values() for s in n.steps if getattr(s, "table", None) == table)


@pytest.mark.parametrize("table", ["d", "a", "w", "j", "s"])
def test_the_matcher_picks_exactly_the_subjects_entries_of_each_layout(tmp_path: Path, table: str) -> None:
    spec = _spec(tmp_path)
    everyone = _run(spec, [*OTHERS, SUBJECT])[table]  # the subject last: the others keep their offsets
    without = _run(spec, OTHERS)[table]
    match = subject_matcher(_step(spec, table), "user_id", SUBJECT)
    assert match is not None
    subjects = everyone - without
    assert subjects, "the subject left no entry: the test checks nothing"
    assert {k for k in everyone if match(k)} == subjects
    if table == "a":
        assert len(subjects) > 1  # the key's record and its chunks


def test_a_step_keyed_by_another_field_is_not_chosen(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    assert subject_matcher(_step(spec, "ids"), "user_id", SUBJECT) is None
    assert subject_matcher(_step(spec, "a"), "event_id", SUBJECT) is None


def test_tables_chosen_in_the_fraud_topology_by_the_field_name_only() -> None:
    spec = load_topology(REPO / "topologies" / "fraud_detection.yaml").spec
    by_customer = plan(spec, "customer_id", "C-000123")
    assert [(t.table, t.how, t.topic) for t in by_customer.targets] == [
        ("customer_profiles", FEED, "customers.clean")
    ]
    assert by_customer.groups == []  # a fed table: no worker needs to stop
    assert any(line.startswith("seen_txns") for line in by_customer.left)
    by_account = plan(spec, "account_id", "A-1")
    assert [(t.table, t.how) for t in by_account.targets] == [("account_velocity", CHANGELOG)]
    assert by_account.targets[0].topic == "fraud_detection.account_velocity.changelog"
    assert by_account.groups == ["fraud_detection.score_transactions"]
    assert by_account.targets[0].match("A-1") and not by_account.targets[0].match("A-10")


def test_the_report_names_topics_with_their_retention_and_never_the_value() -> None:
    spec = load_topology(REPO / "topologies" / "fraud_detection.yaml").spec
    chosen = plan(spec, "account_id", "A-SECRET-1")
    text = render(chosen, {"account_velocity": 2}, dry_run=False)
    assert "table account_velocity (aggregate by account_id): removed 2 entries" in text
    assert "transactions: may hold records of this subject until retention (7d) expires" in text
    assert "A-SECRET-1" not in text


def test_no_table_keyed_by_the_field_is_one_line_naming_the_fields() -> None:
    spec = load_topology(REPO / "topologies" / "fraud_detection.yaml").spec
    with pytest.raises(UserError) as err:
        plan(spec, "email", "x@example.com")
    assert str(err.value) == (
        "--key: no table of fraud_detection is keyed by 'email' (its tables are keyed by: "
        "account_id, customer_id, txn_id)"
    )


@pytest.mark.parametrize("text", ["C123", "=C123", "customer_id=", ""])
def test_a_key_that_is_not_field_equals_value_is_refused(text: str) -> None:
    with pytest.raises(UserError, match="is not FIELD=VALUE"):
        parse_subject(text)


def test_the_value_may_hold_an_equals_sign() -> None:
    assert parse_subject("id=a=b") == ("id", "a=b")


def test_the_audit_digest_is_keyed() -> None:
    import hashlib

    one = subject_digest("customer_id", "C-000123", "secret-1")
    assert one == subject_digest("customer_id", "C-000123", "secret-1")
    assert one != subject_digest("customer_id", "C-000123", "secret-2")
    assert one != hashlib.sha256(b"customer_id=C-000123").hexdigest()
    assert "C-000123" not in one


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("customer", "--key: 'customer' is not FIELD=VALUE"),
        ("email=x@example.com", "--key: no table of fraud_detection is keyed by 'email'"),
    ],
)
def test_the_command_refuses_a_bad_key_in_one_line_before_reaching_kafka(
    key: str, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from stream_orch.cli.main import main

    # an address where nothing answers: the refusal comes first, or the test would hang on it
    code = main(
        [
            "--bootstrap-servers",
            "127.0.0.1:1",
            "forget",
            str(REPO / "topologies" / "fraud_detection.yaml"),
            "--key",
            key,
        ]
    )
    err = capsys.readouterr().err
    assert code != 0
    assert err.startswith(f"stream-orch: error: {expected}") and len(err.strip().splitlines()) == 1, err


def test_a_table_written_by_steps_keyed_by_different_fields_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "shared.yaml"
    path.write_text(
        LAYOUTS.replace("table: ids,", "table: d,").replace("  ids: {description: dedupe by event id}\n", "")
    )
    spec = load_topology(path).spec
    with pytest.raises(UserError, match="table d is written by steps keyed by different fields"):
        plan(spec, "user_id", SUBJECT)


SCHEDULED = """\
topology: shop
topics:
  stock: {partitions: 2, key: item}
  reorder: {partitions: 2, key: item}
  reorder.dlq: {partitions: 1}
tables:
  stock: {topic: stock}
nodes:
  work:
    schedule: {every: 1m, catch_up: latest, scan: [stock]}
    steps:
      - {step: filter, when: on_hand < 5}
    routes: [{to: reorder}]
    errors: {dlq: reorder.dlq}
"""


def test_a_scheduled_nodes_tick_table_is_not_listed(tmp_path: Path) -> None:
    from stream_orch.topology.repartition import expand

    path = tmp_path / "shop.yaml"
    path.write_text(SCHEDULED)
    spec = load_topology(path).spec
    assert "work.ticks" in expand(spec).tables  # the table the test is about
    chosen = plan(spec, "item", "x")
    assert [t.table for t in chosen.targets] == ["stock"]
    assert chosen.left == [] and chosen.groups == []
