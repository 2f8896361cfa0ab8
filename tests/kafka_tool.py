"""Kafka's own consumer-groups tool (``ConsumerGroupCommand``, kafka-tools artifact of the broker's
version), run from the same jars as the broker: the reference the lag tests compare against.

Test modules import ``kafka_jars_fixture`` to get the ``kafka_jars`` fixture."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from stream_orch.settings import Settings

BOOTSTRAP = Settings().bootstrap_servers  # the broker the tests use (STREAM_ORCH_BOOTSTRAP_SERVERS)
POM = Path(__file__).resolve().parents[1] / "stream_orch" / "broker" / "pom.xml"


@pytest.fixture(scope="session", name="kafka_jars")
def kafka_jars_fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The broker manager's cached jars when present, else resolved by Maven into a temp folder."""
    cached = Settings().state_dir / "kafka" / "jars"
    if any(cached.glob("kafka-tools-*.jar")):
        return cached
    if not shutil.which("mvn") or not shutil.which("java"):
        pytest.skip("java and mvn are needed for the kafka-tools reference")
    out = tmp_path_factory.mktemp("kjars")
    subprocess.run(
        [
            "mvn",
            "-q",
            "-B",
            "dependency:copy-dependencies",
            f"-DoutputDirectory={out}",
            "-DincludeScope=runtime",
            "-f",
            str(POM),
        ],
        check=True,
        timeout=900,
    )
    return out


def describe(jars: Path, group: str) -> dict[tuple[str, int], tuple[int, int, int]]:
    """(topic, partition) -> (current offset, log end offset, lag) as ConsumerGroupCommand prints them."""
    proc = subprocess.run(
        [
            "java",
            "-cp",
            f"{jars}/*",
            "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
            "--bootstrap-server",
            BOOTSTRAP,
            "--describe",
            "--group",
            group,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = [ln.split() for ln in proc.stdout.splitlines() if ln.strip()]
    header = next(i for i, ln in enumerate(lines) if ln[:3] == ["GROUP", "TOPIC", "PARTITION"])
    cols = lines[header]
    out = {}
    for row in lines[header + 1 :]:
        rec = dict(zip(cols, row, strict=False))
        if rec.get("GROUP") == group and rec["CURRENT-OFFSET"] != "-":
            out[(rec["TOPIC"], int(rec["PARTITION"]))] = (
                int(rec["CURRENT-OFFSET"]),
                int(rec["LOG-END-OFFSET"]),
                int(rec["LAG"]),
            )
    return out
