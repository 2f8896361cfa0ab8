"""The alert rules are valid, and every metric the dashboard and rules query is one we export."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from stream_orch.observability.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARDS = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
METRIC = re.compile(r"\bstream_orch_\w+")


def _queried(text: str) -> set[str]:
    return {re.sub(r"_(bucket|count|sum)$", "", name) for name in METRIC.findall(text)}


def _exported() -> set[str]:
    return Metrics().metric_names()


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_accepts_the_rules() -> None:
    proc = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_rules_query_only_exported_metrics() -> None:
    queried = _queried(RULES.read_text())
    assert {"stream_orch_consumer_lag_seconds", "stream_orch_dead_lettered_total"} <= queried
    assert queried - _exported() == set()


def test_dashboard_queries_only_exported_metrics() -> None:
    assert DASHBOARDS
    for path in DASHBOARDS:
        dash = json.loads(path.read_text())
        exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
        exprs += [v["query"]["query"] for v in dash["templating"]["list"] if isinstance(v.get("query"), dict)]
        queried = set().union(*(_queried(e) for e in exprs))
        assert len(queried) >= 15, path.name
        assert queried - _exported() == set(), path.name


def test_the_crude_parser_catches_an_unknown_name() -> None:
    assert _queried("rate(stream_orch_nope_total[5m]) + stream_orch_x_bucket") == {
        "stream_orch_nope_total",
        "stream_orch_x",
    }
