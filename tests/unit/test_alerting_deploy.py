"""Alerting as shipped: the rule unit tests pass under promtool, Alertmanager accepts its config and
routes each kind of alert to the receiver the README's escalation table names, and compose runs it."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[2]
RULE_TESTS = sorted((ROOT / "deploy" / "prometheus" / "tests").glob("*.yml"))
AM_CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"


def _alertnames() -> set[str]:
    doc = YAML(typ="safe").load(RULES.read_text())
    return {r["alert"] for g in doc["groups"] for r in g["rules"]}


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (Debian: prometheus)")
def test_promtool_rule_unit_tests_pass() -> None:
    assert RULE_TESTS
    proc = subprocess.run(
        ["promtool", "test", "rules", *map(str, RULE_TESTS)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_every_alert_has_a_firing_and_a_silent_case() -> None:
    yaml = YAML(typ="safe")
    firing: set[str] = set()
    silent: set[str] = set()
    for path in RULE_TESTS:
        for case in yaml.load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    assert firing == _alertnames()
    assert silent == _alertnames()


def test_every_alert_has_a_known_severity() -> None:
    doc = YAML(typ="safe").load(RULES.read_text())
    severities = {r["alert"]: r["labels"]["severity"] for g in doc["groups"] for r in g["rules"]}
    assert set(severities.values()) == {"critical", "warning"}, severities


@pytest.mark.skipif(
    shutil.which("amtool") is None, reason="amtool not installed (Debian: prometheus-alertmanager)"
)
def test_amtool_accepts_the_alertmanager_config() -> None:
    proc = subprocess.run(["amtool", "check-config", str(AM_CONFIG)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


@pytest.mark.skipif(
    shutil.which("amtool") is None, reason="amtool not installed (Debian: prometheus-alertmanager)"
)
@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        # ops alerts: critical pages, warning opens a ticket
        ("alertname=StreamOrchConsumerStalled severity=critical topology=recon", "pager"),
        ("alertname=StreamOrchLagAboveSLO severity=critical topology=obs_forward_1a2b", "pager"),
        ("alertname=StreamOrchDeadLetterRate severity=warning topology=recon", "ticket"),
        ("alertname=StreamOrchMetricsDown severity=warning", "ticket"),
        # the fraud topology's critical alerts page the fraud team, its warnings are tickets
        ("alertname=StreamOrchConsumerStalled severity=critical topology=fraud_detection", "fraud-pager"),
        ("alertname=StreamOrchConsumerStalled severity=critical topology=fraud_detection_x1", "fraud-pager"),
        ("alertname=StreamOrchLagGrowing severity=warning topology=fraud_detection", "ticket"),
        # business alerts from fraud.alerts (stream-orch alerts forward): the same path
        ("alertname=FraudAlert severity=critical topic=fraud.alerts alert_key=t1", "fraud-pager"),
        ("alertname=FraudAlert severity=warning topic=fraud.alerts alert_key=t2", "ticket"),
        # an unknown severity still reaches someone, without waking them
        ("alertname=Other severity=info", "ticket"),
        ("alertname=Other", "ticket"),
    ],
)
def test_routes(labels: str, receiver: str) -> None:
    proc = subprocess.run(
        ["amtool", "config", "routes", "test", f"--config.file={AM_CONFIG}", *labels.split()],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == receiver


def test_inhibition_names_real_alerts() -> None:
    config = YAML(typ="safe").load(AM_CONFIG.read_text())
    known = _alertnames()
    text = str(config["inhibit_rules"])
    named = set(re.findall(r"StreamOrch\w+", text))
    assert named <= known, named - known
    assert "StreamOrchManyGroupsStalled" in named


def test_compose_runs_alertmanager_and_prometheus_sends_to_it() -> None:
    yaml = YAML(typ="safe")
    compose = yaml.load((ROOT / "docker-compose.yml").read_text())
    am = compose["services"]["alertmanager"]
    assert "127.0.0.1:9093:9093" in am["ports"]
    assert "./deploy/alertmanager:/etc/alertmanager:ro" in am["volumes"]
    config_arg = next(a for a in am["command"] if a.startswith("--config.file="))
    assert config_arg == "--config.file=/etc/alertmanager/alertmanager.yml"
    assert "alertmanager-data" in compose["volumes"]
    prom = yaml.load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = [
        t for am in prom["alerting"]["alertmanagers"] for sc in am["static_configs"] for t in sc["targets"]
    ]
    assert targets == ["alertmanager:9093"]
    jobs = {job["job_name"]: job for job in prom["scrape_configs"]}
    assert jobs["stream-orch-lag"]["static_configs"][0]["targets"] == ["host.docker.internal:9309"]
