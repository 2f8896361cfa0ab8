"""Metric naming conventions, bounded labels and the batch-level update API."""

from __future__ import annotations

import math

from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from stream_orch.observability.collectors import PartitionLag
from stream_orch.observability.metrics import MAX_LABEL_VALUES, OTHER, Metrics
from stream_orch.observability.status import Status


def samples(m: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(m.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def test_every_name_has_prefix_and_counters_end_in_total() -> None:
    m = Metrics()
    names = m.metric_names()
    assert names and all(n.startswith("stream_orch_") for n in names)
    for name, kind in m.families():
        if kind == "counter":
            assert name + "_total" in names
        else:
            assert not name.endswith("_total"), name
        if kind == "histogram":
            assert name.endswith(("_seconds", "_records")), f"{name}: histograms carry a base unit"


def test_two_instances_do_not_collide() -> None:
    a, b = Metrics(), Metrics()
    a.batch_done("n", "in", 5)
    assert samples(a)[("stream_orch_events_in_total", (("node", "n"), ("topic", "in")))] == 5
    assert ("stream_orch_events_in_total", (("node", "n"), ("topic", "in"))) not in samples(b)


def test_batch_done_updates_all_counters_once_per_batch() -> None:
    m = Metrics()
    m.batch_done(
        "enrich",
        "payments",
        100,
        outs={("ok", "enriched"): 90, ("big", "alerts"): 5},
        dropped={"filtered": 3, "duplicate": 2},
        seconds=0.02,
        e2e_samples=[0.004, 0.2, 0.3, 2.0],
    )
    s = samples(m)
    assert s[("stream_orch_events_in_total", (("node", "enrich"), ("topic", "payments")))] == 100
    assert (
        s[("stream_orch_events_out_total", (("node", "enrich"), ("route", "ok"), ("topic", "enriched")))]
        == 90
    )
    assert (
        s[("stream_orch_events_out_total", (("node", "enrich"), ("route", "big"), ("topic", "alerts")))] == 5
    )
    assert s[("stream_orch_events_dropped_total", (("node", "enrich"), ("reason", "duplicate")))] == 2
    assert s[("stream_orch_batch_processing_seconds_count", (("node", "enrich"),))] == 1
    e2e = "stream_orch_end_to_end_latency_seconds"
    assert s[(e2e + "_count", (("node", "enrich"),))] == 4
    assert math.isclose(s[(e2e + "_sum", (("node", "enrich"),))], 2.504)
    # cumulative buckets identical to what observe() one by one would give
    assert s[(e2e + "_bucket", (("le", "0.005"), ("node", "enrich")))] == 1
    assert s[(e2e + "_bucket", (("le", "0.25"), ("node", "enrich")))] == 2
    assert s[(e2e + "_bucket", (("le", "2.5"), ("node", "enrich")))] == 4


def test_free_form_labels_are_capped_per_node() -> None:
    m = Metrics()
    for i in range(MAX_LABEL_VALUES + 20):
        m.error("n", f"Error{i}")
    s = samples(m)
    classes = {dict(k[1])["error_class"] for k in s if k[0] == "stream_orch_errors_total"}
    assert len(classes) == MAX_LABEL_VALUES + 1
    assert s[("stream_orch_errors_total", (("error_class", OTHER), ("node", "n")))] == 20


def test_lag_snapshot_replaces_series_and_partition_labels_can_be_dropped() -> None:
    rows = [
        PartitionLag("g", "t", 0, 10, 15, 5, 2.0, Status.OK),
        PartitionLag("g", "t", 1, 10, 30, 20, 9.5, Status.STALL),
    ]
    m = Metrics()
    m.set_lag(rows, {"g": Status.STALL})
    s = samples(m)
    assert s[("stream_orch_consumer_lag_records", (("group", "g"), ("partition", "1"), ("topic", "t")))] == 20
    assert s[("stream_orch_partition_status", (("group", "g"), ("partition", "1"), ("topic", "t")))] == 3
    assert s[("stream_orch_consumer_group_status", (("group", "g"),))] == int(Status.STALL)
    m.set_lag(rows[:1], {"g": Status.OK})
    assert (
        "stream_orch_consumer_lag_records",
        (("group", "g"), ("partition", "1"), ("topic", "t")),
    ) not in samples(m)

    agg = Metrics(per_partition=False)
    agg.set_lag(rows, {"g": Status.STALL})
    s = samples(agg)
    assert s[("stream_orch_consumer_lag_records", (("group", "g"), ("topic", "t")))] == 25
    assert s[("stream_orch_consumer_lag_seconds", (("group", "g"), ("topic", "t")))] == 9.5
    assert s[("stream_orch_partition_status", (("group", "g"), ("topic", "t")))] == int(Status.STALL)
    assert not any("partition" in dict(k[1]) for k in s)


def test_table_and_rebalance_helpers() -> None:
    m = Metrics()
    m.rebalanced("n", 6)
    m.rebalanced("n", 3)
    m.node_restarted("n", 0)
    m.node_restarted("quiet", 0)
    m.node_restarted("n")
    m.restore_progress("n", "totals", 500, 1500)
    m.set_recovering("n", "totals", True)
    m.restore_progress("n", "totals", 1500, 0)
    m.set_recovering("n", "totals", False)
    s = samples(m)
    assert s[("stream_orch_rebalances_total", (("node", "n"),))] == 2
    assert s[("stream_orch_assigned_partitions", (("node", "n"),))] == 3
    assert s[("stream_orch_node_restarts_total", (("node", "n"),))] == 1
    assert s[("stream_orch_node_restarts_total", (("node", "quiet"),))] == 0
    assert s[("stream_orch_table_restored_records_total", (("node", "n"), ("table", "totals")))] == 2000
    assert s[("stream_orch_table_recovering", (("node", "n"), ("table", "totals")))] == 0


def test_global_tables_are_read_at_scrape_time() -> None:
    from types import SimpleNamespace

    table = SimpleNamespace(
        name="profiles", restarts=2, last_applied_s=1.5e9, decode_errors=1, invalid_rows=4
    )
    table.lag = lambda: 7
    m = Metrics()
    m.watch_global_tables([table])
    s = samples(m)
    assert s[("stream_orch_global_table_lag_records", (("table", "profiles"),))] == 7
    assert s[("stream_orch_global_table_follower_restarts_total", (("table", "profiles"),))] == 2
    assert s[("stream_orch_global_table_last_applied_timestamp_seconds", (("table", "profiles"),))] == 1.5e9
    skipped = "stream_orch_global_table_skipped_rows_total"
    assert s[(skipped, (("reason", "invalid"), ("table", "profiles")))] == 4
    assert s[(skipped, (("reason", "undecodable"), ("table", "profiles")))] == 1
    table.invalid_rows = 5
    assert samples(m)[(skipped, (("reason", "invalid"), ("table", "profiles")))] == 5
