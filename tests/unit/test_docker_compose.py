"""docker-compose.yml cannot run here (no Docker), so its shape is checked instead."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return YAML(typ="safe").load((REPO / "docker-compose.yml").read_text())


def test_services_and_ports(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) >= {"kafka", "prometheus", "grafana"}
    assert services["kafka"]["image"] == "apache/kafka:4.1.1"
    assert "127.0.0.1:9092:9092" in services["kafka"]["ports"]
    assert "127.0.0.1:9090:9090" in services["prometheus"]["ports"]
    assert "127.0.0.1:3000:3000" in services["grafana"]["ports"]


def test_kafka_is_single_node_kraft_with_rf_1(compose: dict[str, Any]) -> None:
    env = compose["services"]["kafka"]["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    for key in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
    ):
        assert env[key] == 1, key
    assert "-Xmx512m" in env["KAFKA_HEAP_OPTS"]


def test_volumes_point_at_files_in_the_repo(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert "kafka-data:/var/lib/kafka/data" in services["kafka"]["volumes"]
    named = set(compose["volumes"])
    assert {"kafka-data", "prometheus-data", "grafana-data"} <= named
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO / source).is_dir(), f"{volume}: {source} missing in the repository"
            else:
                assert source in named, f"{volume}: undeclared named volume"


def test_prometheus_scrapes_the_worker_metrics_port() -> None:
    config = YAML(typ="safe").load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    targets = [t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]]
    assert "host.docker.internal:9308" in targets
    assert config["rule_files"] == ["alerts.yml"]


def test_grafana_provisioning() -> None:
    prov = REPO / "deploy/grafana/provisioning"
    yaml = YAML(typ="safe")
    datasource = yaml.load((prov / "datasources/prometheus.yml").read_text())["datasources"][0]
    assert datasource["url"] == "http://prometheus:9090"
    provider = yaml.load((prov / "dashboards/stream-orch.yml").read_text())["providers"][0]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


def test_mounts_line_up_with_the_provisioning_paths(compose: dict[str, Any]) -> None:
    """Each container path the configs name is where compose mounts the matching repo folder."""

    def mounts(service: str) -> dict[str, str]:  # container path -> repo path
        out = {}
        for volume in compose["services"][service]["volumes"]:
            source, target = volume.split(":")[:2]
            if source.startswith("./"):
                out[target] = source
        return out

    yaml = YAML(typ="safe")
    prom = mounts("prometheus")
    command = compose["services"]["prometheus"]["command"]
    config_path = next(a for a in command if a.startswith("--config.file=")).split("=", 1)[1]
    config_dir, config_name = config_path.rsplit("/", 1)
    assert prom[config_dir] == "./deploy/prometheus"
    config = yaml.load((REPO / "deploy/prometheus" / config_name).read_text())
    for rules in config["rule_files"]:  # relative to the config file, i.e. inside the same mount
        assert (REPO / "deploy/prometheus" / rules).is_file()

    grafana = mounts("grafana")
    assert grafana["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"
    provider = yaml.load((REPO / "deploy/grafana/provisioning/dashboards/stream-orch.yml").read_text())
    dash_dir = grafana[provider["providers"][0]["options"]["path"]]
    assert sorted(p.name for p in (REPO / dash_dir).glob("*.json")) == ["stream-orch.json"]
