"""A local replicated cluster (``stream-orch kafka up --brokers N``): N KRaft nodes, each broker
and controller, on consecutive client ports, each with its own folder under
``<state>/kafka/cluster/broker-<n>``.

Client ports are ``port .. port+N-1``, controller ports the N after them. ``cluster.json`` records
the size and the base port, so ``status``, ``down`` and ``logs`` find the nodes without
``--brokers``. Topics created on it default to replication factor 3 and ``min.insync.replicas=2``
(see :class:`~stream_orch.broker.config.Quorum`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from stream_orch.broker.config import HOST, Quorum
from stream_orch.broker.layout import BrokerLayout
from stream_orch.broker.manager import BrokerManager, BrokerStatus, _say, new_cluster_id
from stream_orch.errors import UserError

# three JVMs share the machine with the workers: 512 MB each holds a test run's topics
NODE_HEAP_MB = 512


@dataclass(frozen=True)
class ClusterSpec:
    brokers: int
    port: int

    @property
    def client_ports(self) -> tuple[int, ...]:
        return tuple(range(self.port, self.port + self.brokers))

    @property
    def controller_ports(self) -> tuple[int, ...]:
        return tuple(range(self.port + self.brokers, self.port + 2 * self.brokers))

    @property
    def bootstrap(self) -> str:
        return ",".join(f"{HOST}:{p}" for p in self.client_ports)


class ClusterManager:
    """The nodes of the local cluster, each driven by its own :class:`BrokerManager`."""

    def __init__(self, state_dir: Path, spec: ClusterSpec, say: Callable[[str], None] = _say) -> None:
        if spec.brokers < 2:
            raise UserError(f"--brokers must be 2 or more for a cluster (got {spec.brokers})")
        self.state_dir = state_dir
        self.spec = spec
        self.say = say
        self.dir = BrokerLayout.under(state_dir).cluster_dir
        self.nodes = [
            BrokerManager(
                state_dir,
                port=spec.client_ports[i],
                controller_port=spec.controller_ports[i],
                say=say,
                layout=BrokerLayout.cluster_node(state_dir, i + 1),
                quorum=Quorum(i + 1, spec.controller_ports),
                heap_mb=NODE_HEAP_MB,
            )
            for i in range(spec.brokers)
        ]

    @classmethod
    def existing(cls, state_dir: Path, say: Callable[[str], None] = _say) -> ClusterManager | None:
        """The cluster recorded under ``state_dir`` (by an earlier ``up --brokers``), if any."""
        path = BrokerLayout.under(state_dir).cluster_dir / "cluster.json"
        try:
            data = json.loads(path.read_text())
            return cls(state_dir, ClusterSpec(int(data["brokers"]), int(data["port"])), say)
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def select(self, broker: int | None) -> list[BrokerManager]:
        if broker is None:
            return self.nodes
        if not 1 <= broker <= len(self.nodes):
            raise UserError(f"--broker must be between 1 and {len(self.nodes)} (got {broker})")
        return [self.nodes[broker - 1]]

    def _recorded(self) -> tuple[ClusterSpec | None, str | None]:
        try:
            data = json.loads((self.dir / "cluster.json").read_text())
            return ClusterSpec(int(data["brokers"]), int(data["port"])), str(data["cluster_id"])
        except (OSError, ValueError, KeyError, TypeError):
            return None, None

    async def up(self, timeout_s: float = 90.0, broker: int | None = None) -> list[BrokerStatus]:
        """Start every stopped node (or node ``broker``), then wait until each answers: a node
        only serves once a majority of controllers is up, so all start before any is awaited."""
        recorded, cluster_id = self._recorded()
        if recorded is not None and recorded != self.spec:
            raise UserError(
                f"the cluster in {self.dir} has {recorded.brokers} brokers from port {recorded.port}: "
                "start it with those, or `stream-orch kafka reset` first"
            )
        if cluster_id is None:
            cluster_id = new_cluster_id()
            self.dir.mkdir(parents=True, exist_ok=True)
            (self.dir / "cluster.json").write_text(
                json.dumps({"brokers": self.spec.brokers, "port": self.spec.port, "cluster_id": cluster_id})
            )
        started = []
        for node in self.select(broker):
            if (await node.status()).running:
                continue
            node.check_ports()
            java = node.prepare(cluster_id)
            started.append((node, node.spawn(java)))
        for node, proc in started:
            await node.wait_ready(proc, timeout_s)
            self.say(f"Kafka broker {node.quorum.node_id} is up (PID {proc.pid}) at {node.address}")
        self.say(
            f"cluster of {self.spec.brokers} at {self.spec.bootstrap} (replication factor "
            f"{self.nodes[0].quorum.replication_factor}, min.insync.replicas "
            f"{self.nodes[0].quorum.min_insync_replicas}); data in {self.dir}"
        )
        return [await node.status() for node in self.nodes]

    async def status(self, broker: int | None = None) -> list[BrokerStatus]:
        return [await node.status() for node in self.select(broker)]

    def down(self, broker: int | None = None, wipe: bool = False) -> None:
        """Stop the nodes together: one by one, the last would wait out its grace period for a
        controller majority that left before it (a controlled shutdown needs the quorum)."""
        nodes = self.select(broker)
        with ThreadPoolExecutor(len(nodes)) as pool:
            list(pool.map(lambda node: node.down(wipe=wipe), nodes))
        if wipe and broker is None:
            (self.dir / "cluster.json").unlink(missing_ok=True)

    def log_tail(self, broker: int | None = None, lines: int = 50) -> str:
        return "\n".join(
            f"== broker {node.quorum.node_id} ({node.layout.server_log}) ==\n{node.log_tail(lines)}"
            for node in self.select(broker)
        )
