"""What the numbers were measured on: every result carries it, since they mean little without."""

from __future__ import annotations

import contextlib
import glob
import importlib.metadata
import os
import platform
import re
import subprocess
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[1]
LIBS = ("aiokafka", "faust-streaming", "quixstreams", "confluent-kafka", "orjson", "stream-orch")


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def broker_pids(bootstrap: str) -> list[int]:
    """The processes listening on the brokers' ports on this machine (to sample their CPU), those
    visible: one per address of ``bootstrap`` (a local cluster of three: three)."""
    ports = {int(address.rsplit(":", 1)[1]) for address in bootstrap.split(",")}
    found: dict[int, int] = {}
    with contextlib.suppress(psutil.Error, OSError, ValueError):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port in ports and conn.pid:
                found[conn.laddr.port] = conn.pid
    return [found[p] for p in sorted(found)]


def broker_pid(bootstrap: str) -> int | None:
    """The first broker's process (its jars name the Kafka version)."""
    pids = broker_pids(bootstrap)
    return pids[0] if pids else None


def kafka_version(bootstrap: str) -> str:
    """The broker's version, from the jars on the classpath of the process listening on its port."""
    if os.environ.get("BENCH_KAFKA_VERSION"):
        return os.environ["BENCH_KAFKA_VERSION"]
    pid = broker_pid(bootstrap)
    if pid is None:
        return "unknown"
    with contextlib.suppress(psutil.Error, OSError):
        for part in psutil.Process(pid).cmdline():
            for entry in part.split(":"):
                for jar in glob.glob(entry) if "*" in entry else [entry]:
                    m = re.search(r"kafka-server-([\w.\-]+?)\.jar$|kafka_[\d.]+-([\w.\-]+?)\.jar$", jar)
                    if m:
                        return m.group(1) or m.group(2)
    return "unknown"


def _git_commit() -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10
        )
        return out.stdout.strip()
    return "unknown"


def info(bootstrap: str) -> dict[str, Any]:
    versions = {}
    for lib in LIBS:
        try:
            versions[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            versions[lib] = None
    return {
        "cpu_model": cpu_model(),
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "kafka": kafka_version(bootstrap),
        "broker_pids": broker_pids(bootstrap),
        "bootstrap": bootstrap,
        "load_avg_start": [round(x, 2) for x in os.getloadavg()],
        "git_commit": _git_commit(),
        "libraries": versions,
    }
