"""Start, stop, inspect and wipe the local single-node Kafka broker (``stream-orch kafka ...``)."""

from __future__ import annotations

import asyncio
import base64
import shutil
import subprocess
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from stream_orch.broker import process
from stream_orch.broker.config import HOST, Quorum, configured_address, write_configs
from stream_orch.broker.jars import ensure_jars, jars_ready
from stream_orch.broker.layout import BrokerLayout
from stream_orch.broker.probe import broker_answers, coordinators_ready, port_in_use
from stream_orch.broker.secure import (
    ADMIN_USER,
    MECHANISM,
    SecureLayout,
    client_settings,
    ensure_certificates,
    secure_properties,
)
from stream_orch.broker.tools import require
from stream_orch.errors import UserError

# 512 MB ran out (OutOfMemoryError, 2026-12-04) on a local broker holding ~13k partitions left by
# interrupted test runs and six parallel test sessions; 1 GB is small beside a laptop's memory.
HEAP_MB = 1024


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding. One that starts with
    '-' (1 in 64) would be read as an option by the storage tool, so those are drawn again, as
    Kafka's own Uuid.randomUuid does."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    pid: int | None
    address: str
    external: bool = False
    """A broker answers at the address but was not started from this state folder."""

    def describe(self) -> str:
        if self.external:
            return f"running (not managed by stream-orch) at {self.address}"
        if self.running:
            return f"running, PID {self.pid}, at {self.address}"
        return f"stopped (address {self.address})"


def _say(message: str) -> None:
    print(message, flush=True)


class BrokerManager:
    """One local broker: its port pair and its folder under ``state_dir/kafka``."""

    def __init__(
        self,
        state_dir: Path,
        port: int = 9092,
        controller_port: int | None = None,
        say: Callable[[str], None] = _say,
        secure: bool = False,
        layout: BrokerLayout | None = None,
        quorum: Quorum | None = None,
        heap_mb: int = HEAP_MB,
    ) -> None:
        self.layout = layout or BrokerLayout.under(state_dir)
        self.port = port
        self.controller_port = controller_port or port + 1
        self.quorum = quorum or Quorum()
        self.heap_mb = heap_mb
        self.say = say
        self.secure_layout = SecureLayout(self.layout.secure_dir)
        # a state folder once started secure stays secure (its storage holds the admin's SCRAM)
        self.secure = secure or self.secure_layout.exists()

    def admin_client_args(self) -> dict[str, object]:
        """Security arguments of an aiokafka client acting as this broker's admin ({} when plain)."""
        if not self.secure:
            return {}
        import ssl

        return {
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": MECHANISM,
            "sasl_plain_username": ADMIN_USER,
            "sasl_plain_password": self.secure_layout.admin_password(),
            "ssl_context": ssl.create_default_context(cafile=str(self.secure_layout.ca_pem)),
        }

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    async def status(self) -> BrokerStatus:
        pid = process.running_pid(self.layout)
        if pid is not None:  # where it really listens, whatever --kafka-port says now
            return BrokerStatus(True, pid, configured_address(self.layout) or self.address)
        if port_in_use(self.port) and await broker_answers(self.address, security=self._probe_args()):
            return BrokerStatus(True, None, self.address, external=True)
        return BrokerStatus(False, None, self.address)

    async def up(self, timeout_s: float = 60.0) -> BrokerStatus:
        """Start the broker detached and return once it answers a metadata request."""
        current = await self.status()
        if current.external:
            self.say(f"a Kafka broker not started by stream-orch already answers at {self.address}; using it")
            return current
        if current.running:
            self.say(f"Kafka is already running (PID {current.pid}) at {current.address}")
            return current
        self.check_ports()
        java = self.prepare()
        proc = self.spawn(java)
        await self.wait_ready(proc, timeout_s)
        self.say(f"Kafka is up (PID {proc.pid}) at {self.address}; data in {self.layout.data_dir}")
        if self.secure:
            self.say(
                f"SASL_SSL ({MECHANISM}), ACLs enforced; to connect as the admin:\n"
                + "\n".join(client_settings(self.secure_layout, self.address))
            )
        return BrokerStatus(True, proc.pid, self.address)

    def check_ports(self) -> None:
        for port in (self.port, self.controller_port):
            if port_in_use(port):
                raise UserError(
                    f"port {HOST}:{port} is used by another program; pick another with --kafka-port"
                )

    def prepare(self, cluster_id: str | None = None) -> str:
        """Jars, certificates, config files and (first start) formatted storage; returns ``java``.
        ``cluster_id``: the id every node of a local cluster is formatted with."""
        if self.secure and self.layout.formatted_marker.exists() and not self.secure_layout.exists():
            raise UserError(
                f"the broker in {self.layout.root} was formatted without --secure: "
                "use another --state-dir, or `stream-orch kafka reset` first"
            )
        java = require("java")
        if not jars_ready(self.layout.jars_dir):
            self.say(f"Fetching the Kafka jars with Maven into {self.layout.jars_dir} (once) ...")
        ensure_jars(self.layout.jars_dir)
        secure = None
        if self.secure:
            ensure_certificates(self.secure_layout, require("keytool"))
            secure = secure_properties(self.secure_layout, self.port, self.controller_port)
        write_configs(self.layout, self.port, self.controller_port, secure, self.quorum)
        if not self.layout.formatted_marker.exists():
            self._format(java, cluster_id or new_cluster_id())
        return java

    def _probe_args(self) -> dict[str, object]:
        return self.admin_client_args() if self.secure and self.secure_layout.exists() else {}

    def _java_cmd(self, java: str, heap_mb: int, main: str, *args: str) -> list[str]:
        return [
            java, f"-Xmx{heap_mb}m", f"-Xms{min(256, heap_mb)}m",
            f"-Dlog4j2.configurationFile={self.layout.log4j_properties}",
            "-cp", str(self.layout.jars_dir / "*"), main, *args,
        ]  # fmt: skip

    def _format(self, java: str, cluster_id: str) -> None:
        """First start only: KRaft needs its storage formatted with a cluster id."""
        self.layout.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = self._java_cmd(
            java, 256, "kafka.tools.StorageTool",
            "format", "-t", cluster_id, "-c", str(self.layout.server_properties),
        )  # fmt: skip
        if self.secure:
            # the admin's SCRAM credentials must exist before the broker starts: it uses them itself
            # (inter-broker listener). Other users come later through the admin API (`kafka user add`).
            password = self.secure_layout.admin_password()
            cmd += ["--add-scram", f"{MECHANISM}=[name={ADMIN_USER},password={password}]"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if proc.returncode != 0:
            detail = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-3:])
            raise UserError(f"formatting the Kafka storage in {self.layout.data_dir} failed: {detail}")

    def spawn(self, java: str) -> subprocess.Popen[bytes]:
        """Its own session, so the broker outlives the CLI and a Ctrl-C in the shell."""
        cmd = self._java_cmd(java, self.heap_mb, "kafka.Kafka", str(self.layout.server_properties))
        with self.layout.stdout_log.open("wb") as out:  # only this start's JVM output
            proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                cwd=self.layout.root, start_new_session=True,
            )  # fmt: skip
        self.layout.pid_file.write_text(f"{proc.pid}\n")
        return proc

    async def wait_ready(self, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.layout.pid_file.unlink(missing_ok=True)
                raise UserError(
                    f"the Kafka broker exited during start-up (code {proc.returncode}); "
                    f"last log lines:\n{self._failure_context()}"
                )
            security = self._probe_args()
            if await broker_answers(self.address, 2.0, security) and await coordinators_ready(
                self.address, security=security
            ):
                return
            await asyncio.sleep(0.5)
        process.stop(proc.pid, self.layout, grace_s=10)
        proc.wait()
        raise UserError(
            f"the Kafka broker did not answer at {self.address} within {timeout_s:g}s and was stopped; "
            f"last log lines:\n{self._failure_context()}"
        )

    def down(self, wipe: bool = False, grace_s: float = 30.0) -> None:
        pid = process.running_pid(self.layout)
        if pid is None:
            self.say(f"Kafka is not running (address {self.address})")
        else:
            killed = process.stop(pid, self.layout, grace_s=grace_s)
            how = f"killed after {grace_s:.0f}s" if killed else "stopped"
            kept = "" if wipe else f"; data kept in {self.layout.data_dir}"
            self.say(f"Kafka (PID {pid}) {how}{kept}")
        if wipe:
            self.wipe()

    def wipe(self) -> None:
        """Delete topics, offsets and the cluster id; the next ``up`` formats afresh. Jars stay."""
        if process.running_pid(self.layout) is not None:
            raise UserError("Kafka is running: stop it first (`stream-orch kafka down`)")
        shutil.rmtree(self.layout.data_dir, ignore_errors=True)
        self.say(f"Kafka data cleared ({self.layout.data_dir})")

    def _failure_context(self) -> str:
        """JVM output (class-path or port errors) plus the broker log's last lines."""
        parts = [_tail(path, 10) for path in (self.layout.stdout_log, self.layout.server_log)]
        return "\n".join(p for p in parts if p) or f"(no broker log in {self.layout.logs_dir})"

    def log_tail(self, lines: int = 50) -> str:
        """Last lines of the broker log (or of the JVM output when log4j never started)."""
        for path in (self.layout.server_log, self.layout.stdout_log):
            if text := _tail(path, lines):
                return text
        return f"(no broker log yet in {self.layout.logs_dir})"


def _tail(path: Path, lines: int) -> str:
    if not path.is_file():
        return ""
    with path.open(errors="replace") as fh:
        return "".join(deque(fh, maxlen=lines)).rstrip("\n")
