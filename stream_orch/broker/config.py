"""Renders the broker's ``server.properties`` and log4j2 config from the packaged templates."""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources

from stream_orch.broker.layout import BrokerLayout

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Quorum:
    """Where a node sits in its KRaft quorum and the topic defaults that follow from its size.

    Every node of a local cluster is broker and controller: three JVMs rather than four (one
    controller + three brokers) on a small machine, and losing any one node leaves both a
    controller majority and min ISR. The voters' controller ports are listed so each node
    finds the others."""

    node_id: int = 1
    controller_ports: tuple[int, ...] = ()
    """Controller port of node 1, 2, ... (empty: a single node, voter of itself)."""

    @property
    def size(self) -> int:
        return max(1, len(self.controller_ports))

    @property
    def replication_factor(self) -> int:
        return min(3, self.size)

    @property
    def min_insync_replicas(self) -> int:
        """One less than the replication factor (2 of 3): an acks=all write survives one lost node
        and producers stop, rather than write to a single copy, when two are gone."""
        return max(1, self.replication_factor - 1)

    def voters(self, own_controller_port: int) -> str:
        ports = self.controller_ports or (own_controller_port,)
        return ",".join(f"{i}@{HOST}:{port}" for i, port in enumerate(ports, start=1))


def _template(name: str) -> str:
    return resources.files("stream_orch.broker").joinpath(name).read_text()


def _fill(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    return text


def write_configs(
    layout: BrokerLayout,
    port: int,
    controller_port: int,
    secure: dict[str, str] | None = None,
    quorum: Quorum | None = None,
) -> None:
    """Write both files on every start so a changed port or path always takes effect; ``secure``:
    the properties of the secure mode (:mod:`stream_orch.broker.secure`), which hold secrets, so
    the file is then readable by its owner only; ``quorum``: the node's place in a local cluster
    (default: a single node)."""
    layout.root.mkdir(parents=True, exist_ok=True)
    layout.logs_dir.mkdir(parents=True, exist_ok=True)
    quorum = quorum or Quorum()
    text = _fill(
        _template("server.properties"),
        {
            "PORT": str(port),
            "CONTROLLER_PORT": str(controller_port),
            "DATA_DIR": str(layout.data_dir),
            "NODE_ID": str(quorum.node_id),
            "VOTERS": quorum.voters(controller_port),
            "RF": str(quorum.replication_factor),
            "MIN_ISR": str(quorum.min_insync_replicas),
        },
    )
    if secure is not None:
        from stream_orch.broker.secure import apply_properties

        text = apply_properties(text, secure)
    layout.server_properties.touch(mode=0o600, exist_ok=True)
    os.chmod(layout.server_properties, 0o600 if secure is not None else 0o644)
    layout.server_properties.write_text(text)
    layout.log4j_properties.write_text(
        _fill(_template("log4j2.properties"), {"LOG_FILE": str(layout.server_log)})
    )


def configured_address(layout: BrokerLayout) -> str | None:
    """host:port the broker of this state folder was last started with (its advertised listener)."""
    try:
        text = layout.server_properties.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("advertised.listeners=") and "://" in line:
            return line.split("://", 1)[1].split(",")[0].strip()
    return None
