"""`punctuate`: a window whose partition receives nothing more closes when the wall clock says so
(the worker writes a punctuation record to the idle partition; the window step moves that
partition's watermark to now - lateness). Lint refuses it where there is nothing to punctuate;
a forged or malformed punctuation header moves nothing it should not."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream_orch.reliability import headers as H
from stream_orch.testing import TopologyTestDriver
from stream_orch.topology.lint import lint
from stream_orch.topology.loader import load_topology

T0 = 1_767_261_600_000  # 2026-01-01T10:00:00Z, a window start
S = 1000

TOPOLOGY = """\
topology: clicks
topics:
  clicks: {partitions: 2, key: user}
  counts: {partitions: 2, key: user}
  clicks.dlq: {partitions: 1}
tables:
  per_user: {}
nodes:
  count:
    input: clicks
    PUNCTUATE
    steps:
      - {step: window, table: per_user, key: user, kind: tumbling, size: 1m, as: n, time_field: ts}
    routes: [{to: counts}]
    errors: {dlq: clicks.dlq}
"""


def driver(tmp_path: Path, punctuate: str) -> TopologyTestDriver:
    path = tmp_path / "clicks.yaml"
    path.write_text(TOPOLOGY.replace("PUNCTUATE", punctuate))
    return TopologyTestDriver(path, schemas=tmp_path, start_ms=T0)


def results(d: TopologyTestDriver) -> list[tuple[str, int, int]]:
    return [(r.value["user"], r.value["window_start"], r.value["n"]) for r in d.read("counts")]


def test_an_idle_partition_closes_its_windows_by_the_wall_clock(tmp_path: Path) -> None:
    with driver(tmp_path, "punctuate: {every: 30s, lateness: 5s}") as d:
        for i in range(3):
            d.pipe("clicks", {"user": "ann", "ts": T0 + i * S})
        d.pipe("clicks", {"user": "bob", "ts": T0 + 10 * S})
        d.tick(T0 + 40 * S)  # idle 40 s: punctuated to T0 + 35 s, the window [T0, T0+60s) stays open
        assert results(d) == []
        d.tick(T0 + 70 * S)  # punctuated to T0 + 65 s: closed
        assert sorted(results(d)) == [("ann", T0, 3), ("bob", T0, 1)]
        d.tick(T0 + 200 * S)  # emitted once
        assert results(d) == []
        d.pipe("clicks", {"user": "ann", "ts": T0 + 30 * S})  # behind the punctuated watermark
        d.process()
        assert results(d) == [] and d.stats("count")["dropped"].get("late_event") == 1


def test_without_punctuate_the_windows_of_an_idle_partition_stay_open(tmp_path: Path) -> None:
    with driver(tmp_path, "") as d:
        d.pipe("clicks", {"user": "ann", "ts": T0})
        d.tick(T0 + 3600 * S)
        assert results(d) == []


def test_a_malformed_punctuation_header_moves_nothing(tmp_path: Path) -> None:
    with driver(tmp_path, "") as d:
        d.pipe("clicks", {"user": "ann", "ts": T0}, key="ann")
        p = next(r.partition for r in d.records("clicks"))
        for bad in (b"soon", b"-5", b"9" * 40):
            marks = [(H.WATERMARK_ONLY, b""), (H.PUNCTUATION, bad)]
            d._logs.append("clicks", p, [(None, None, d.now_ms, marks)], d.now_ms)
        d.process()
        assert results(d) == [] and d.dead_letters() == []


@pytest.mark.parametrize(
    ("punctuate", "extra", "message"),
    [
        ("punctuate: {every: 30s}", "", None),
        ("punctuate: {every: 0s}", "", "must be more than 0"),
        ("punctuate: {every: 30s}", "nowindow", "has no window step"),
    ],
)
def test_lint_of_punctuate(tmp_path: Path, punctuate: str, extra: str, message: str | None) -> None:
    text = TOPOLOGY.replace("PUNCTUATE", punctuate)
    if extra == "nowindow":
        no_window = "{step: filter, when: user != 'x'}  # {step: window, table"
        text = text.replace("{step: window, table", no_window)
    path = tmp_path / "clicks.yaml"
    path.write_text(text)
    if message is None:
        assert [str(p) for p in lint(load_topology(path), tmp_path) if p.severity == "error"] == []
        return
    try:
        found = [str(p) for p in lint(load_topology(path), tmp_path)]
    except Exception as exc:  # refused by the model: one line with the file and line
        found = [str(exc)]
    assert any("clicks.yaml:11: " in p and message in p for p in found), found
