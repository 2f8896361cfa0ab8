"""A filter's dropped records move the watermark of a later window (issue 20, part 3).

Through the topology test driver, i.e. the worker's own record path (NodePipeline and its
context): a record a filter drops still tells the window how far event time has gone, at its
place in the partition, so it closes windows and makes later records late exactly as if it had
reached the window, whatever the batches.
"""

from __future__ import annotations

import pytest
from step_harness import SCHEMAS

from stream_orch.testing import TopologyTestDriver
from stream_orch.topology.loader import parse_topology

M = 60_000
T0 = 1_700_000_040_000

TOPOLOGY = """
topology: f
topics:
  scans: {key: parcel, partitions: 2}
  counts: {key: parcel, partitions: 2}
  scans.dlq: {}
tables:
  w: {}
nodes:
  per_minute:
    input: scans
    batch_size: BATCH
    steps:
      - {step: filter, when: "kind != 'noise'"}
      - {step: window, table: w, key: parcel, kind: tumbling, size: 1m, as: n, late: dlq}
    routes:
      - {to: counts}
    errors: {dlq: scans.dlq}
"""


def run(records: list[dict], batch: int) -> tuple[list[dict], list[str], dict]:
    text = TOPOLOGY.replace("BATCH", str(batch))
    driver = TopologyTestDriver(parse_topology(text, "f.yaml", env={}), schemas=SCHEMAS)
    try:
        driver.pipe_many("scans", records)
        out = [r.value for r in driver.records("counts")]
        late = [
            r.value["i"]
            for r in driver.dead_letters()
            if r.headers["so.error.reason"].startswith("late_event")
        ]
        return out, late, driver.table("w")
    finally:
        driver.close()


RECORDS = [
    {"parcel": "a", "kind": "scan", "ts": T0, "i": 0},
    {"parcel": "a", "kind": "scan", "ts": T0 + 10_000, "i": 1},
    {"parcel": "a", "kind": "noise", "ts": T0 + 2 * M, "i": 2},  # dropped by the filter
    {"parcel": "a", "kind": "scan", "ts": T0 + 20_000, "i": 3},  # late: event time is at T0 + 2m
    {"parcel": "a", "kind": "scan", "ts": T0 + 2 * M + 1, "i": 4},  # stays open
]


@pytest.mark.parametrize("batch", [1, 2, 3, 100])
def test_records_a_filter_drops_close_windows_and_make_later_records_late(batch: int):
    out, late, _ = run(RECORDS, batch)
    assert out == [{"parcel": "a", "window_start": T0, "window_end": T0 + M, "n": 2}]
    assert late == [3]


def test_a_dropped_record_after_a_kept_one_does_not_make_it_late():
    """In offset order: a record is judged with the watermark of the records before it only."""
    records = [
        {"parcel": "a", "kind": "scan", "ts": T0 + 5_000, "i": 0},
        {"parcel": "a", "kind": "scan", "ts": T0 + 20_000, "i": 1},
        {"parcel": "a", "kind": "noise", "ts": T0 + 5 * M, "i": 2},
    ]
    for batch in (1, 100):
        out, late, _ = run(records, batch)
        assert out == [{"parcel": "a", "window_start": T0, "window_end": T0 + M, "n": 2}] and late == []


def test_only_dropped_records_in_a_batch_still_close_and_persist_the_watermark():
    """A batch whose records all go to the filter still reaches the window (and its watermark is
    kept in the table, so a restarted worker judges the next record the same way)."""
    records = [{"parcel": "a", "kind": "scan", "ts": T0, "i": 0}] + [
        {"parcel": "a", "kind": "noise", "ts": T0 + 90_000 + k, "i": 1 + k} for k in range(3)
    ]
    out, _, table = run(records, 1)
    assert out == [{"parcel": "a", "window_start": T0, "window_end": T0 + M, "n": 1}]
    assert any(isinstance(v, dict) and v.get("w") == T0 + 90_002 for v in table.values())


JOIN = """
topology: j
topics:
  orders: {key: parcel, partitions: 1}
  payments: {key: parcel, partitions: 1}
  out: {key: parcel, partitions: 1}
  orders.dlq: {}
tables:
  j: {}
nodes:
  match:
    input: orders
    steps:
      - {step: filter, when: "kind != 'noise'"}
      - {step: join, topic: payments, table: j, key: parcel, before: 1m, after: 1m, prefix: "p_"}
    routes:
      - {to: out}
    errors: {dlq: orders.dlq}
"""


def test_records_a_filter_drops_move_a_joins_watermark_and_expire_the_other_side():
    driver = TopologyTestDriver(parse_topology(JOIN, "j.yaml", env={}), schemas=SCHEMAS)
    try:
        driver.pipe("payments", {"parcel": "a", "ts": T0, "amount": 1})
        assert any(k.startswith("R\x1f") for k in driver.table("j"))  # waits for an order
        driver.pipe("orders", {"parcel": "b", "kind": "noise", "ts": T0 + 5 * M})
        # the input side's time passed the payment's bound (t + before): nothing can match it
        assert not any(k.startswith("R\x1f") for k in driver.table("j"))
        assert driver.table("j")["\x1dwatermark.L"] == T0 + 5 * M
    finally:
        driver.close()
