"""Scheduled nodes in the topology language and the test driver: lint refuses what makes no
sense on one (with file:line), the driver fires ticks per catch_up, scans take prefixes, and an
untrusted table row is skipped and counted or dead-lettered with its reason, never stopping a
tick. The example's cases file (README "Schedules and punctuation") passes."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from stream_orch.cli.main import main
from stream_orch.testing import TopologyTestDriver
from stream_orch.topology.graph import build_graph, to_mermaid
from stream_orch.topology.lint import lint
from stream_orch.topology.loader import load_topology
from stream_orch.topology.problems import SpecError

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "reorder"
MIN = 60_000
T0 = 1_767_261_600_000  # 2026-01-01T10:00:00Z

TOPOLOGY = """\
topology: shop
topics:
  stock: {partitions: 2, key: item, schema: stock_level}
  raw: {partitions: 2, key: item}
  reorder: {partitions: 2, key: item}
  reorder.dlq: {partitions: 1}
tables:
  stock: {topic: stock}
  raw: {topic: raw}
nodes:
  work:
    schedule: {every: 1m, catch_up: CATCH_UP, scan: SCAN}
    steps:
      - {step: derive, fields: {short: reorder_point - on_hand}}
      - {step: filter, when: short > 0}
    routes: [{to: reorder}]
    errors: {dlq: reorder.dlq}
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "schemas").mkdir(exist_ok=True)
    (tmp_path / "schemas" / "stock_level.avsc").write_text(
        (EXAMPLE / "schemas" / "stock_level.avsc").read_text()
    )
    path = tmp_path / "shop.yaml"
    path.write_text(text)
    return path


def topology(tmp_path: Path, catch_up: str = "latest", scan: str = "[stock]") -> Path:
    return write(tmp_path, TOPOLOGY.replace("CATCH_UP", catch_up).replace("SCAN", scan))


def row(item: str, on_hand: int, reorder_point: int = 10) -> dict[str, object]:
    region, sku = item.split("|")
    return {"item": item, "region": region, "sku": sku, "on_hand": on_hand, "reorder_point": reorder_point}


DEDUPE = "      - {step: dedupe, field: item, table: raw, horizon: 1h}\n      - {step: filter"


def problems(path: Path) -> list[str]:
    return [str(p) for p in lint(load_topology(path), path.parent / "schemas")]


# ---------------------------------------------------------------------------- lint


def test_a_valid_scheduled_node_lints_clean(tmp_path: Path) -> None:
    assert problems(topology(tmp_path, scan="[stock, raw]")) == []


@pytest.mark.parametrize(
    ("change", "line", "message"),
    [
        (("    schedule:", "    input: stock\n    schedule:"), 11, "a node has `input`"),
        (("    schedule: {every: 1m, catch_up: latest, scan: [stock]}\n", ""), 11, "needs `input`"),
        (("every: 1m", 'cron: "0 25 * * *"'), 12, "cron hour field `25`: 25 is outside 0-23"),
        (("every: 1m", 'cron: "0 * * * *", timezone: Paris/Nowhere'), 12, "unknown time zone"),
        (("every: 1m", "every: 1m, timezone: Europe/Paris"), 12, "`timezone` applies to `cron`"),
        (("catch_up: latest", "catch_up: sometimes"), 12, "catch_up"),
    ],
)
def test_a_schedule_that_cannot_load_is_one_problem_with_its_line(
    tmp_path: Path, change: tuple[str, str], line: int, message: str
) -> None:
    path = write(tmp_path, TOPOLOGY.replace("CATCH_UP", "latest").replace("SCAN", "[stock]").replace(*change))
    with pytest.raises(SpecError) as info:
        load_topology(path)
    assert any(p.line == line and message in p.message for p in info.value.problems), info.value


@pytest.mark.parametrize(
    ("change", "line", "message"),
    [
        (("scan: [stock]", "scan: [stokc]"), 12, "scans unknown table `stokc` (hint: did you mean `stock`?)"),
        (("  raw: {topic: raw}", "  raw: {}"), 12, "scans table `raw`, which steps write"),
        (("      - {step: filter", DEDUPE), 15, "cannot have a dedupe step"),
        (("{dlq: reorder.dlq}", "{dlq: reorder.dlq, retry: {delays: [1s]}}"), 17, "has no retry tiers"),
        (("short: reorder_point - on_hand", "short: reorder_pont - on_hand"), 14, "unknown field `reorder_p"),
    ],
)  # fmt: skip
def test_lint_of_a_scheduled_node(tmp_path: Path, change: tuple[str, str], line: int, message: str) -> None:
    text = TOPOLOGY.replace("CATCH_UP", "latest").replace(
        "SCAN", "[stock, raw]" if "raw" in change[0] else "[stock]"
    )
    found = problems(write(tmp_path, text.replace(*change)))
    assert any(p.startswith(f"{tmp_path / 'shop.yaml'}:{line}: ") and message in p for p in found), found


def test_a_topic_or_table_named_like_the_internal_ones_is_refused(tmp_path: Path) -> None:
    text = TOPOLOGY.replace("CATCH_UP", "latest").replace("SCAN", "[stock, raw]")
    text = text.replace(
        "  reorder.dlq: {partitions: 1}\n", "  reorder.dlq: {partitions: 1}\n  shop.work.ticks: {}\n"
    )
    text = text.replace("  raw: {topic: raw}\n", "  raw: {topic: raw}\n  work.ticks: {}\n")
    found = problems(write(tmp_path, text))
    assert any(":7: topic `shop.work.ticks` is the internal ticks topic" in p for p in found), found
    assert any(":11: table `work.ticks` is the internal table" in p for p in found), found


def test_tick_time_is_a_field_expressions_may_read(tmp_path: Path) -> None:
    text = TOPOLOGY.replace("CATCH_UP", "latest").replace("SCAN", "[stock]")
    text = text.replace("short: reorder_point - on_hand", "short: reorder_point - on_hand, at: tick_time")
    assert [p for p in problems(write(tmp_path, text)) if "warning:" not in p] == []


def test_the_graph_draws_the_schedule_and_the_scanned_table(tmp_path: Path) -> None:
    graph = build_graph(load_topology(topology(tmp_path)).spec)
    drawn = to_mermaid(graph)
    assert "every 1m" in drawn and any(e.kind == "lookup" and e.label == "scan" for e in graph.edges)


# ---------------------------------------------------------------------------- the driver


def reorder_keys(driver: TopologyTestDriver) -> list[tuple[int, str]]:
    return [(r.value["tick_time"], r.key) for r in driver.read("reorder")]


def test_each_tick_emits_the_rows_below_threshold_per_catch_up(tmp_path: Path) -> None:
    for catch_up, after_gap in (
        ("all", [T0 + MIN, T0 + 2 * MIN, T0 + 3 * MIN, T0 + 4 * MIN]),
        ("latest", [T0 + 4 * MIN]),
        ("skip", []),
    ):
        with TopologyTestDriver(topology(tmp_path, catch_up), start_ms=T0 - 1) as driver:
            driver.pipe("stock", row("EU|kettle", 3))
            driver.pipe("stock", row("EU|toaster", 30))
            assert driver.tick(T0) == [T0]
            assert reorder_keys(driver) == [(T0, "EU|kettle")]
            driver.tick(T0 + 30_000)  # the same minute: nothing is due
            driver.tick(T0 + 4 * MIN + 5)  # three minutes missed
            assert [t for t, _ in reorder_keys(driver)] == after_gap, catch_up
            driver.tick(T0 + 5 * MIN)
            assert reorder_keys(driver) == [(T0 + 5 * MIN, "EU|kettle")]


def test_a_scan_takes_a_key_prefix_or_range(tmp_path: Path) -> None:
    scans = {
        "[{table: stock, prefix: 'EU|'}]": ["EU|kettle", "EU|toaster"],
        "[{table: stock, from: 'EU|l', to: 'US|l'}]": ["EU|toaster", "US|kettle"],
        "[stock]": ["EU|kettle", "EU|toaster", "US|kettle", "US|lamp"],
    }
    for scan, expected in scans.items():
        with TopologyTestDriver(topology(tmp_path, scan=scan), start_ms=T0) as driver:
            for item in ("US|lamp", "EU|toaster", "US|kettle", "EU|kettle"):
                driver.pipe("stock", row(item, 1))
            driver.tick()
            assert [k for _, k in reorder_keys(driver)] == expected, scan  # in key order


def test_untrusted_rows_are_skipped_and_counted_or_dead_lettered_and_the_tick_goes_on(tmp_path: Path) -> None:
    path = topology(tmp_path, scan="[stock, raw]")
    with TopologyTestDriver(path, start_ms=T0) as driver:
        driver.pipe("stock", row("EU|kettle", 3))
        driver.pipe("stock", b"{not json", key="EU|broken")  # cannot be decoded
        driver.pipe("stock", {"item": "EU|half", "region": "EU"}, key="EU|half")  # not the schema
        driver.pipe("raw", {"item": "US|lamp", "on_hand": "many", "reorder_point": 5})  # no schema
        driver.pipe("raw", row("US|kettle", 1))
        driver.tick()
        assert [k for _, k in reorder_keys(driver)] == ["EU|kettle", "US|kettle"]
        table = driver.fed_tables["stock"]
        assert (table.decode_errors, table.invalid_rows) == (1, 1)  # skipped and counted
        dead = driver.dead_letters("work")
        assert len(dead) == 1 and dead[0].key == "US|lamp"
        assert "expression_error" in (dead[0].error or {}).get("reason", "")
        assert orjson.loads(dead[0].raw_value or b"") == {
            "item": "US|lamp",
            "on_hand": "many",
            "reorder_point": 5,
        }
        driver.tick(T0 + MIN)  # the next tick runs as well
        assert [k for _, k in reorder_keys(driver)] == ["EU|kettle", "US|kettle"]


def test_a_malformed_tick_record_is_dead_lettered_and_ticks_go_on(tmp_path: Path) -> None:
    with TopologyTestDriver(topology(tmp_path), start_ms=T0) as driver:
        driver.pipe("stock", row("EU|kettle", 3))
        driver.pipe("shop.work.ticks", {"tick": "soon"})
        driver.tick()
        assert [k for _, k in reorder_keys(driver)] == ["EU|kettle"]
        reasons = [d.error.get("reason", "") for d in driver.dead_letters("work")]
        assert len(reasons) == 1 and reasons[0].startswith("malformed_tick")


def test_the_example_cases_pass(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["test", str(EXAMPLE / "reorder.yaml"), str(EXAMPLE / "reorder.cases.yaml")])
    out = capsys.readouterr().out
    assert code == 0 and "4 cases: 4 passed, 0 failed" in out, out


def test_a_row_that_is_not_an_object_is_skipped_and_counted_by_the_tick() -> None:
    import asyncio

    from stream_orch.runtime.batch import NodeContext
    from stream_orch.state.tables import LocalTable
    from stream_orch.state.topic_rows import TopicRows
    from stream_orch.steps.base import Event
    from stream_orch.steps.tick import TickStepImpl
    from stream_orch.topology.models_schedule import ScheduleSpec, TickStep

    rows = TopicRows("stock", "stock", orjson.loads)  # no schema: any JSON is a row
    for key, value in ((b"a", b"[1, 2]"), (b"b", b'{"on_hand": 1}'), (b"c", b'"text"')):
        rows.apply(key, value)
    state = LocalTable("work.ticks", "changelog")
    state.open(0)
    step = TickStepImpl(
        TickStep(step="tick", table="work.ticks", schedule=ScheduleSpec(every=MIN, scan=["stock"]))
    )
    ctx = NodeContext("shop", "work", {}, {"stock": rows, "work.ticks": state})
    out = asyncio.run(step.run([Event({"tick": T0}, topic="shop.work.ticks")], ctx))
    assert [(e.key, e.value) for e in out] == [(b"b", {"on_hand": 1, "tick_time": T0})]
    assert ctx.dropped == {"malformed_row": 2}
