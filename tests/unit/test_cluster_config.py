"""Config generation of the local replicated cluster (``kafka up --brokers N``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream_orch.broker.cluster import ClusterManager, ClusterSpec
from stream_orch.broker.config import Quorum, write_configs
from stream_orch.broker.layout import BrokerLayout
from stream_orch.errors import UserError


def _props(path: Path) -> dict[str, str]:
    pairs = (
        line.split("=", 1)
        for line in path.read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    return {k: v for k, v in pairs}


def test_a_cluster_node_lists_every_voter_and_replicates_three_ways(tmp_path: Path) -> None:
    spec = ClusterSpec(3, 9292)
    layout = BrokerLayout.cluster_node(tmp_path, 2)
    write_configs(
        layout, spec.client_ports[1], spec.controller_ports[1], quorum=Quorum(2, spec.controller_ports)
    )
    props = _props(layout.server_properties)
    assert props["node.id"] == "2"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9295,2@127.0.0.1:9296,3@127.0.0.1:9297"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9293,CONTROLLER://127.0.0.1:9296"
    assert props["log.dirs"] == str(layout.data_dir)
    for key in ("default.replication.factor", "offsets.topic.replication.factor",
                "transaction.state.log.replication.factor"):  # fmt: skip
        assert props[key] == "3", key
    for key in ("min.insync.replicas", "transaction.state.log.min.isr"):
        assert props[key] == "2", key


def test_the_single_broker_keeps_replication_one(tmp_path: Path) -> None:
    layout = BrokerLayout.under(tmp_path)
    write_configs(layout, 9092, 9093)
    props = _props(layout.server_properties)
    assert props["node.id"] == "1"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert props["default.replication.factor"] == props["min.insync.replicas"] == "1"
    assert "@" not in props["offsets.topic.replication.factor"]


def test_nodes_have_their_own_folders_and_share_the_jars(tmp_path: Path) -> None:
    nodes = [BrokerLayout.cluster_node(tmp_path, i) for i in (1, 2, 3)]
    assert len({n.data_dir for n in nodes}) == 3
    assert len({n.pid_file for n in nodes}) == 3
    assert {n.jars_dir for n in nodes} == {BrokerLayout.under(tmp_path).jars_dir}


def test_ports_are_consecutive_and_controllers_follow() -> None:
    spec = ClusterSpec(3, 9292)
    assert spec.client_ports == (9292, 9293, 9294)
    assert spec.controller_ports == (9295, 9296, 9297)
    assert spec.bootstrap == "127.0.0.1:9292,127.0.0.1:9293,127.0.0.1:9294"


def test_a_quorum_of_two_replicates_twice_with_min_isr_one() -> None:
    quorum = Quorum(1, (1, 2))
    assert (quorum.replication_factor, quorum.min_insync_replicas) == (2, 1)


def test_broker_selection_is_checked(tmp_path: Path) -> None:
    cluster = ClusterManager(tmp_path, ClusterSpec(3, 9292))
    assert [n.quorum.node_id for n in cluster.select(None)] == [1, 2, 3]
    assert [n.port for n in cluster.select(3)] == [9294]
    with pytest.raises(UserError, match="between 1 and 3"):
        cluster.select(4)
    with pytest.raises(UserError, match="2 or more"):
        ClusterManager(tmp_path, ClusterSpec(1, 9292))


def test_the_recorded_cluster_is_found_again(tmp_path: Path) -> None:
    assert ClusterManager.existing(tmp_path) is None
    cluster = ClusterManager(tmp_path, ClusterSpec(3, 9400))
    cluster.dir.mkdir(parents=True)
    (cluster.dir / "cluster.json").write_text('{"brokers": 3, "port": 9400, "cluster_id": "x"}')
    found = ClusterManager.existing(tmp_path)
    assert found is not None and found.spec == ClusterSpec(3, 9400)
