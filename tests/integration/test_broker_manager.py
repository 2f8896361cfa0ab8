"""Lifecycle of ``stream-orch kafka`` on its own port and state folder (the shared broker is untouched)."""

from __future__ import annotations

import random
import re
import socket
from pathlib import Path

import orjson
import pytest
from kafka_helpers import run_cli

from stream_orch.broker.jars import ensure_jars, jars_ready
from stream_orch.broker.layout import BrokerLayout

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _free_port_pair() -> int:
    for _ in range(100):
        port = random.randrange(21000, 29000)
        if _free(port) and _free(port + 1):
            return port
    raise AssertionError("no two free adjacent ports")


def _our_java_pids(layout: BrokerLayout) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if "kafka.Kafka" in cmd and str(layout.root) in cmd:
                pids.append(int(entry.name))
    return pids


@pytest.fixture(scope="session")
def shared_jars(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's jar cache if filled, else one Maven copy for all tests of this module."""
    project = BrokerLayout.under(REPO / ".state").jars_dir
    if jars_ready(project):
        return project
    jars = tmp_path_factory.mktemp("kafka") / "jars"
    ensure_jars(jars)
    return jars


@pytest.fixture
def broker_dir(tmp_path: Path, shared_jars: Path) -> tuple[int, Path]:
    """A fresh port pair and state folder, with the jars linked in (a real first `up` would copy them)."""
    layout = BrokerLayout.under(tmp_path)
    layout.root.mkdir(parents=True)
    layout.jars_dir.symlink_to(shared_jars, target_is_directory=True)
    return _free_port_pair(), tmp_path


async def test_up_status_down_restart_keeps_topics(broker_dir: tuple[int, Path]) -> None:
    port, state = broker_dir
    layout = BrokerLayout.under(state)
    kafka = ("--kafka-port", str(port), "--state-dir", str(state), "kafka")
    bootstrap = f"127.0.0.1:{port}"
    try:
        code, out, _ = await run_cli(*kafka, "status")
        assert (code, out.strip()) == (3, f"Kafka stopped (address {bootstrap})")

        code, out, err = await run_cli(*kafka, "up", timeout=300)
        assert code == 0, err + out
        pid = int(re.search(r"Kafka is up \(PID (\d+)\)", out).group(1))  # type: ignore[union-attr]
        assert (state / "kafka" / "data" / "meta.properties").exists()

        code, out, _ = await run_cli(*kafka, "up")
        assert code == 0 and f"already running (PID {pid})" in out
        assert "Maven" not in out  # the jars are cached

        code, out, _ = await run_cli(*kafka, "status")
        assert (code, out.strip()) == (0, f"Kafka running, PID {pid}, at {bootstrap}")

        code, _, err = await run_cli("--bootstrap-servers", bootstrap, "produce", "kept", input=b'{"n": 1}\n')
        assert code == 0, err

        code, out, _ = await run_cli(*kafka, "down")
        assert code == 0 and f"Kafka (PID {pid}) stopped; data kept" in out
        assert _our_java_pids(layout) == []
        assert _free(port) and _free(port + 1)
        assert not layout.pid_file.exists()

        code, out, err = await run_cli(*kafka, "up", timeout=120)
        assert code == 0, err + out
        code, out, err = await run_cli(
            "--bootstrap-servers",
            bootstrap,
            "tail",
            "kept",
            "--from-beginning",
            "--max",
            "1",
            "--timeout",
            "30",
        )
        assert code == 0, err
        assert orjson.loads(out)["value"] == {"n": 1}

        code, out, _ = await run_cli(*kafka, "logs", "-n", "5")
        assert code == 0 and len(out.splitlines()) == 5

        code, out, _ = await run_cli(*kafka, "down", "--wipe")
        assert code == 0 and "data cleared" in out
        assert not layout.data_dir.exists()
        assert _our_java_pids(layout) == []
    finally:
        await run_cli(*kafka, "down")


async def test_up_timeout_reports_log_and_leaves_no_process(broker_dir: tuple[int, Path]) -> None:
    port, state = broker_dir
    layout = BrokerLayout.under(state)
    kafka = ("--kafka-port", str(port), "--state-dir", str(state), "kafka")
    try:
        # The JVM cannot start a broker within 0.5 s, so this always times out.
        code, _, err = await run_cli(*kafka, "up", "--timeout", "0.5", timeout=300)
        assert code != 0
        assert f"did not answer at 127.0.0.1:{port} within 0.5s and was stopped; last log lines:" in err
        assert "Traceback" not in err
        assert _our_java_pids(layout) == []
        assert not layout.pid_file.exists()
    finally:
        await run_cli(*kafka, "down")
