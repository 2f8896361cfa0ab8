"""`run --processes`: its argument, each member's plan, and the merge of the members' /metrics."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from stream_orch.cli.argtypes import process_count
from stream_orch.cli.main import main
from stream_orch.observability.aggregate import merge, render
from stream_orch.supervise.members import plan, without_processes
from stream_orch.supervise.supervisor import exit_code


def test_process_count_accepts_counts_and_auto() -> None:
    assert process_count("3") == 3
    assert process_count("auto") == (os.cpu_count() or 1)


@pytest.mark.parametrize("bad", ["0", "-2", "two", ""])
def test_process_count_refuses_other_values(bad: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="processes"):
        process_count(bad)


def test_a_bad_processes_value_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["run", str(tmp_path / "t.yaml"), "--processes", "zero"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--processes" in err and "zero" in err


def test_members_get_their_own_id_folder_and_port() -> None:
    argv = ["--log-level", "INFO", "run", "t.yaml", "--processes", "3", "--node", "n"]
    plans = plan(argv, 3, Path("/s"), 9400, "host-a")
    assert [p.instance_id for p in plans] == ["host-a-p0", "host-a-p1", "host-a-p2"]
    assert [p.state_dir for p in plans] == [Path("/s/p0"), Path("/s/p1"), Path("/s/p2")]
    assert [p.metrics_port for p in plans] == [9401, 9402, 9403]
    for p in plans:
        assert "--processes" not in p.argv
        # the appended flags come last, so they win over the user's
        assert p.argv[-6:] == ("--state-dir", str(p.state_dir), "--metrics-port", str(p.metrics_port),
                               "--metrics-host", "127.0.0.1")  # fmt: skip
    # the same inputs give the same ids: a restarted supervisor's members rejoin as themselves
    assert [p.instance_id for p in plan(argv, 3, Path("/s"), 9400, None)] == [
        p.instance_id for p in plan(argv, 3, Path("/s"), 9400, None)
    ]
    assert plan(argv, 2, Path("/s"), 0, None)[1].metrics_port == 0


def test_without_processes_drops_both_spellings() -> None:
    assert without_processes(["run", "f", "--processes=2", "--processes", "auto", "--node", "x"]) == [
        "run",
        "f",
        "--node",
        "x",
    ]


def test_exit_code_of_a_signalled_member() -> None:
    assert exit_code(0) == 0 and exit_code(3) == 3 and exit_code(-9) == 137


def _member(events: int, seconds: float) -> str:
    r = CollectorRegistry()
    Counter("so_events_in", "records in", ["node"], registry=r).labels("n").inc(events)
    Histogram("so_step_seconds", "step time", registry=r).observe(seconds)
    return generate_latest(r).decode()


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def test_merge_labels_each_members_samples_and_keeps_one_family_per_name() -> None:
    own = CollectorRegistry()
    Counter("so_restarts", "restarts", ["process"], registry=own).labels("1").inc(2)
    text = render(merge({"0": _member(3, 0.2), "1": _member(5, 0.7), "2": "not { metrics"}), own).decode()
    got = _samples(text)
    assert got[("so_events_in_total", (("node", "n"), ("process", "0")))] == 3
    assert got[("so_events_in_total", (("node", "n"), ("process", "1")))] == 5
    assert got[("so_step_seconds_count", (("process", "1"),))] == 1
    assert got[("so_step_seconds_sum", (("process", "1"),))] == pytest.approx(0.7)
    assert got[("so_restarts_total", (("process", "1"),))] == 2
    assert not any(dict(labels).get("process") == "2" for _, labels in got)  # unreadable: left out
    assert text.count("# TYPE so_events_in_total counter") == 1
