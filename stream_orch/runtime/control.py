"""How ``stream-orch reload PID`` reaches a worker: files in a folder of the user's own, and SIGHUP.

Every worker started by ``stream-orch run`` writes ``<pid>.json`` (its topology and file) in
:func:`control_dir` while it runs. ``stream-orch reload`` checks that the pid is such a worker,
writes ``<pid>.request.json`` (a request id, and the version of a rollback), sends SIGHUP, and
waits for ``<pid>.result.json`` with that id. A SIGHUP without a request (``kill -HUP``) reloads
the topology file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def control_dir() -> Path:
    """``$TMPDIR/stream-orch-<uid>/workers``, readable by its user only."""
    folder = Path(tempfile.gettempdir()) / f"stream-orch-{os.getuid()}" / "workers"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return folder


def _write(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)  # the reader sees all of it or nothing


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class WorkerControl:
    """The worker's side: its registration, the pending request, the result."""

    def __init__(self, pid: int, about: dict[str, Any]) -> None:
        self.folder = control_dir()
        self.pid = pid
        _write(self.folder / f"{pid}.json", about)

    def take_request(self) -> dict[str, Any]:
        """The request that came with a SIGHUP (removed), or {} for a bare SIGHUP."""
        path = self.folder / f"{self.pid}.request.json"
        request = _read(path) or {}
        with contextlib.suppress(OSError):
            path.unlink()
        return request

    def answer(self, request_id: str, result: dict[str, Any]) -> None:
        _write(self.folder / f"{self.pid}.result.json", {"id": request_id, **result})

    def close(self) -> None:
        for suffix in (".json", ".request.json", ".result.json"):
            with contextlib.suppress(OSError):
                (self.folder / f"{self.pid}{suffix}").unlink()


def registered(pid: int) -> dict[str, Any] | None:
    """What the worker ``pid`` registered, or None when ``pid`` is not a running worker of
    ``stream-orch run`` (the file of a dead process whose pid was reused does not count)."""
    about = _read(control_dir() / f"{pid}.json")
    if about is None:
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    words = [w.decode(errors="replace") for w in cmdline]
    if "run" not in words or not any("stream-orch" in w or "stream_orch" in w for w in words):
        return None
    return about


def request(pid: int, request_id: str, to_version: str | None) -> None:
    _write(control_dir() / f"{pid}.request.json", {"id": request_id, "to_version": to_version})


def result(pid: int, request_id: str) -> dict[str, Any] | None:
    found = _read(control_dir() / f"{pid}.result.json")
    return found if found and found.get("id") == request_id else None
