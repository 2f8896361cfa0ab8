"""The broker's jars: resolved once by Maven from ``pom.xml`` into the state folder, then reused."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from importlib import resources
from pathlib import Path

from stream_orch.broker.tools import require
from stream_orch.errors import UserError

_MARKER = ".complete"


def _pom() -> Path:
    return Path(str(resources.files("stream_orch.broker").joinpath("pom.xml")))


def _pom_digest() -> str:
    return hashlib.sha256(_pom().read_bytes()).hexdigest()


def jars_ready(jars_dir: Path) -> bool:
    """True when a previous copy finished for the current pom (a changed pin re-resolves)."""
    marker = jars_dir / _MARKER
    return marker.is_file() and marker.read_text().strip() == _pom_digest()


def ensure_jars(jars_dir: Path, *, timeout_s: float = 900) -> bool:
    """Copy the broker's runtime jars into ``jars_dir`` unless already there.

    Returns True when Maven ran. The marker is written last, so an interrupted copy is redone.
    """
    if jars_ready(jars_dir):
        return False
    mvn = require("mvn")
    if jars_dir.exists():
        shutil.rmtree(jars_dir)
    jars_dir.mkdir(parents=True)
    cmd = [
        mvn, "-q", "-B", "dependency:copy-dependencies",
        f"-DoutputDirectory={jars_dir}", "-DincludeScope=runtime", "-f", str(_pom()),
    ]  # fmt: skip
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise UserError(f"Maven did not finish resolving the Kafka jars within {timeout_s:.0f}s") from None
    if proc.returncode != 0 or not any(jars_dir.glob("kafka_2.13-*.jar")):
        tail = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-3:])
        raise UserError(f"Maven could not fetch the Kafka jars (exit {proc.returncode}): {tail}")
    (jars_dir / _MARKER).write_text(_pom_digest() + "\n")
    return True
