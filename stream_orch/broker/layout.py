"""Where the local broker keeps its jars, data, logs and PID file under the state folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class BrokerLayout:
    """Paths of one local broker; every command derives them the same way from ``state_dir``."""

    root: Path
    shared_jars: Path | None = None
    """The jars folder when it is not under ``root``: the nodes of a local cluster share the
    single broker's, so the jars are fetched once."""

    @classmethod
    def under(cls, state_dir: Path) -> BrokerLayout:
        return cls(state_dir.expanduser().resolve() / "kafka")

    @classmethod
    def cluster_node(cls, state_dir: Path, node_id: int) -> BrokerLayout:
        """Node ``node_id`` (1-based) of the local cluster (``kafka up --brokers N``)."""
        single = cls.under(state_dir)
        return cls(single.cluster_dir / f"broker-{node_id}", shared_jars=single.jars_dir)

    @property
    def cluster_dir(self) -> Path:
        """The local cluster's folder: its nodes' folders and ``cluster.json``."""
        return self.root / "cluster"

    @property
    def jars_dir(self) -> Path:
        return self.shared_jars or self.root / "jars"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def server_log(self) -> Path:
        return self.logs_dir / "server.log"

    @property
    def stdout_log(self) -> Path:
        """JVM stdout/stderr: start-up failures that happen before log4j is configured land here."""
        return self.logs_dir / "stdout.log"

    @property
    def pid_file(self) -> Path:
        return self.root / "broker.pid"

    @property
    def server_properties(self) -> Path:
        return self.root / "server.properties"

    @property
    def log4j_properties(self) -> Path:
        return self.root / "log4j2.properties"

    @property
    def secure_dir(self) -> Path:
        """CA, certificates and secrets of the secure mode (``kafka up --secure``)."""
        return self.root / "secure"

    @property
    def formatted_marker(self) -> Path:
        """Written by ``StorageTool format``; its presence means the data folder is formatted."""
        return self.data_dir / "meta.properties"
