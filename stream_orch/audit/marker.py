"""How a worker finds, at its start, that the previous run of its place ended unclean.

A worker with a static member slot (``runtime/membership.py``: the same slot, so the same
file, after a restart on its host) writes ``<instance id>.running`` when it starts and removes
it when it stops gracefully. A file still there at the next start means the previous process
died without its stop (kill -9, OOM, a power cut): the worker audits that stop on its behalf.
Without a slot (``STREAM_ORCH_STATIC_MEMBERSHIP=false``) no run has a successor to find it.
"""

from __future__ import annotations

import contextlib
import os
from datetime import UTC, datetime
from pathlib import Path

import orjson


class RunMarker:
    def __init__(self, path: Path) -> None:
        self.path = path

    def claim(self) -> dict[str, object] | None:
        """Mark this process as running; return what an unclean previous run left (its pid and
        start time), None when it stopped cleanly or there was none."""
        previous: dict[str, object] | None = None
        with contextlib.suppress(OSError):
            try:
                left = orjson.loads(self.path.read_bytes())
                previous = left if isinstance(left, dict) else {}
            except orjson.JSONDecodeError:  # cut short while written: still a run that did not stop
                previous = {}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_bytes(
                orjson.dumps({"pid": os.getpid(), "started": datetime.now(UTC).isoformat()})
            )
        except OSError:
            pass  # a read-only state folder: unclean stops go unnoticed, nothing else changes
        return previous

    def clear(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()
