"""The supervisor's pieces without processes: settings passed to members, member folders and ids,
the restart budget, `--processes` parsing, and the merged /metrics."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from stream_orch.cli.argtypes import process_count
from stream_orch.settings import Settings
from stream_orch.supervise import members as mm
from stream_orch.supervise.aggregate import merge_metrics, render
from stream_orch.supervise.supervisor import plan_members


def _member_text(n: float) -> str:
    r = CollectorRegistry()
    c = Counter("stream_orch_events_in", "Records consumed by a node.", ["node", "topic"], registry=r)
    c.labels("score", "transactions").inc(n)
    return generate_latest(r).decode()


def test_settings_reach_members_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    given = Settings(
        bootstrap_servers="127.0.0.1:9999",
        sasl_password="s3cret",
        static_membership=False,
        max_records_per_s=12.5,
        state_dir=Path("/tmp/x"),
    )
    env = mm.settings_env(given)
    assert "STREAM_ORCH_SASL_MECHANISM" not in env  # None stays unset, not the string "None"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert Settings() == given


def test_each_member_its_own_folder_and_configured_id() -> None:
    settings = Settings(state_dir=Path("/tmp/s"), instance_id="pod-3", metrics_port=9400)
    planned = plan_members(settings, 3, ["python", "-m", "x"], {"PATH": "/bin"})
    assert [m.state_dir for m in planned] == [Path(f"/tmp/s/processes/{i}") for i in range(3)]
    assert [m.env["STREAM_ORCH_STATE_DIR"] for m in planned] == [str(m.state_dir) for m in planned]
    assert [m.env["STREAM_ORCH_INSTANCE_ID"] for m in planned] == ["pod-3-0", "pod-3-1", "pod-3-2"]
    assert all(m.serve and m.env["PATH"] == "/bin" for m in planned)
    unset = plan_members(Settings(metrics_port=0), 2, ["x"], {})
    assert all("STREAM_ORCH_INSTANCE_ID" not in m.env and not m.serve for m in unset)


def test_restart_budget_counts_quick_deaths_only(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(mm.time, "monotonic", lambda: now[0])
    m = mm.Member(0, ["x"], {}, Path("/tmp/m"), serve=False)
    m.started_at = now[0]
    assert m.died(-9) and m.backoff_s() == 0.0  # the first death: back at once
    delays = []
    for _ in range(mm.MAX_QUICK_DEATHS - 2):
        assert m.died(1)
        delays.append(m.backoff_s())
    assert delays == sorted(delays) and delays[0] > 0
    assert not m.died(1)  # the fifth quick death in a row: give up
    m.quick_deaths = 3
    now[0] += mm.QUICK_DEATH_S + 1  # it ran a while: healthy again
    assert m.died(1) and m.quick_deaths == 0


def test_process_count() -> None:
    assert process_count("3") == 3
    assert process_count("auto") >= 1
    for bad in ("0", "-1", "two"):
        with pytest.raises(argparse.ArgumentTypeError, match="auto"):
            process_count(bad)


def test_merged_metrics_label_each_member_and_skip_garbage() -> None:
    members = [mm.Member(i, ["x"], {}, Path(f"/tmp/m{i}"), serve=True) for i in range(3)]
    members[2].restarts = 4
    texts = [(0, _member_text(5)), (1, _member_text(7)), (2, "garbage {{{ not metrics")]
    text = render(merge_metrics(texts, members)).decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }
    key = ("stream_orch_events_in_total", (("member", "0"), ("node", "score"), ("topic", "transactions")))
    assert samples[key] == 5.0
    assert samples[(key[0], (("member", "1"), *key[1][1:]))] == 7.0
    assert not any(
        labels and ("member", "2") in labels and n.startswith("stream_orch_events") for n, labels in samples
    )
    assert samples[("stream_orch_supervisor_member_restarts_total", (("member", "2"),))] == 4.0
    assert samples[("stream_orch_supervisor_member_up", (("member", "0"),))] == 0.0  # never started
    assert text.count("# TYPE stream_orch_events_in_total counter") == 1
