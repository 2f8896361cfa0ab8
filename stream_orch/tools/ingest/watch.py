"""``ingest --watch DIR``: every file that appears in DIR is ingested once, with watchfiles.

A file is taken when it is *complete*: its size and mtime have not changed for ``settle_s``
seconds (1 s by default) since the last change event watchfiles reported for it. The watcher
wakes on events, and every ``settle_s / 2`` without one (watchfiles' ``yield_on_timeout``) to
take the files that have gone quiet. A writer that cannot promise to pause less than that
should write ``.name`` or ``name.tmp``/``name.part`` (ignored) and rename it when done: the
rename is one event and the file is complete at once. Files already in DIR at the start are
taken the same way; the ledger (keyed by content) skips those already ingested, which is
what makes a restarted watcher ingest each file once. Not recursive.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from watchfiles import Change, awatch

from stream_orch.tools.ingest.rejects import SUFFIX as REJECTS_SUFFIX

IGNORED_SUFFIXES = (REJECTS_SUFFIX, ".tmp", ".part", "~")


def wanted(path: Path) -> bool:
    name = path.name
    return not name.startswith(".") and not name.endswith(IGNORED_SUFFIXES)


def _signature(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns) if os.path.isfile(path) else None


class Settling:
    """Files seen changing, until they have been quiet for ``settle_s``."""

    def __init__(self, settle_s: float) -> None:
        self.settle_s = settle_s
        self._seen: dict[Path, tuple[tuple[int, int] | None, float]] = {}

    def touch(self, path: Path, now: float) -> None:
        self._seen[path] = (_signature(path), now)

    def forget(self, path: Path) -> None:
        self._seen.pop(path, None)

    def ready(self, now: float) -> list[Path]:
        out = []
        for path, (sig, since) in list(self._seen.items()):
            current = _signature(path)
            if current is None:
                self.forget(path)
            elif current != sig:
                self._seen[path] = (current, now)
            elif now - since >= self.settle_s:
                self.forget(path)
                out.append(path)
        return sorted(out)


async def watch(
    folder: Path,
    ingest: Callable[[Path], Awaitable[Any]],
    stop: Any,
    *,
    settle_s: float = 1.0,
) -> None:
    """Call ``ingest(path)`` for each complete file of ``folder`` until ``stop`` is set."""
    settling = Settling(settle_s)
    now = time.monotonic()
    for path in sorted(folder.iterdir()):
        if wanted(path) and path.is_file():
            settling.touch(path, now)
    watcher = awatch(
        folder,
        watch_filter=lambda _change, name: wanted(Path(name)),
        stop_event=stop,
        rust_timeout=max(50, int(settle_s * 500)),
        yield_on_timeout=True,
        recursive=False,
        debounce=200,
    )
    async for changes in watcher:
        now = time.monotonic()
        for change, name in changes:
            if change == Change.deleted:
                settling.forget(Path(name))
            else:
                settling.touch(Path(name), now)
        for path in settling.ready(now):
            if stop.is_set():
                return
            await ingest(path)
