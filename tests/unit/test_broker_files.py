"""The broker manager's files and PID checks, without starting Java."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from stream_orch.broker import process
from stream_orch.broker.config import configured_address, write_configs
from stream_orch.broker.layout import BrokerLayout


def test_config_renders_single_node_kraft(tmp_path: Path) -> None:
    layout = BrokerLayout.under(tmp_path)
    write_configs(layout, 19092, 19093)
    props = dict(
        line.split("=", 1)
        for line in layout.server_properties.read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert props["log.dirs"] == str(tmp_path.resolve() / "kafka" / "data")
    for key in ("offsets.topic.replication.factor", "transaction.state.log.replication.factor",
                "transaction.state.log.min.isr"):  # fmt: skip
        assert props[key] == "1"
    assert "@" not in layout.log4j_properties.read_text().replace("%", "")
    assert str(layout.server_log) in layout.log4j_properties.read_text()


def test_the_running_broker_s_address_comes_from_its_config_not_the_current_flag(tmp_path: Path) -> None:
    layout = BrokerLayout.under(tmp_path)
    assert configured_address(layout) is None  # never started
    write_configs(layout, 19092, 19093)
    assert configured_address(layout) == "127.0.0.1:19092"


def test_stale_pid_file_is_removed(tmp_path: Path) -> None:
    layout = BrokerLayout.under(tmp_path)
    layout.root.mkdir(parents=True)
    # a live process that is not our broker (this test), and a PID that does not exist
    for pid in (os.getpid(), 2**22 + 17):
        layout.pid_file.write_text(f"{pid}\n")
        assert process.running_pid(layout) is None
        assert not layout.pid_file.exists()


def test_a_foreign_process_is_never_taken_for_the_broker(tmp_path: Path) -> None:
    layout = BrokerLayout.under(tmp_path)
    with subprocess.Popen(["sleep", "30"]) as sleeper:
        try:
            assert not process.is_our_broker(sleeper.pid, layout)
        finally:
            sleeper.kill()


def test_cluster_ids_never_start_with_a_dash() -> None:
    """The storage tool reads a leading '-' as an option (a fresh-clone `kafka up` failed so)."""
    from stream_orch.broker.manager import new_cluster_id

    ids = [new_cluster_id() for _ in range(2000)]
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
    assert len(set(ids)) == len(ids)
