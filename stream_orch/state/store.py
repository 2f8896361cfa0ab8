"""The store seam: where one partition of a local table keeps its values between batches.

A store holds what the changelog holds, up to a checkpoint: the next changelog offset to read.
Data and checkpoint are written in one atomic write, so a store is always a consistent prefix
of its changelog and a restore only reads the tail after the checkpoint. Steps never see a
store: they use the :class:`~stream_orch.steps.base.Table` protocol of
:class:`~stream_orch.state.tables.LocalTable`, which reads a batch's own writes from overlays
and hands them to the store only once the batch has landed.

Two backends: :class:`MemoryStore` here (nothing survives the process) and
:class:`~stream_orch.state.rocks.RocksStore` (RocksDB on local disk, reused after a restart).
"""

from __future__ import annotations

import logging
import shutil
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

from stream_orch.errors import UserError

log = logging.getLogger(__name__)

TOMBSTONE: Any = object()  # a deleted key in an overlay or a write


class Store(Protocol):
    """One partition of one table: JSON-serialisable values by string key."""

    def get(self, key: str, default: Any = None) -> Any: ...

    def write(
        self,
        changes: Mapping[str, Any],
        checkpoint: int | None,
        encoded: Mapping[str, bytes | None] | None = None,
    ) -> None:
        """Apply ``changes`` (TOMBSTONE deletes) and, if given, the new checkpoint: all or nothing.
        ``encoded``, if given, holds the same changes as JSON bytes (None: deleted), the key
        order of ``changes``: a store that keeps bytes uses them instead of encoding again."""

    def checkpoint(self) -> int | None:
        """The next changelog offset this store has not applied (None: a new store)."""

    def items(self) -> Iterator[tuple[str, Any]]: ...

    def scan(self, start: str, end: str) -> Iterator[tuple[str, Any]]:
        """The keys in ``[start, end)``, in key order."""

    def __len__(self) -> int: ...

    def size_bytes(self) -> int: ...

    def close(self) -> None: ...

    def destroy(self) -> None:
        """Close and delete everything (a store that can no longer be trusted)."""


class MemoryStore:
    """A dict. Nothing is kept across a restart: every assignment restores in full."""

    def __init__(self) -> None:
        self._data: dict[str, Any] = {}
        self._checkpoint: int | None = None
        self._ordered: list[str] | None = None  # sorted keys, built by the first scan after a write

    def get(self, key: str, default: Any = None) -> Any:
        return self._data.get(key, default)

    def write(
        self,
        changes: Mapping[str, Any],
        checkpoint: int | None,
        encoded: Mapping[str, bytes | None] | None = None,
    ) -> None:
        data = self._data
        if changes:
            self._ordered = None
        for key, value in changes.items():
            if value is TOMBSTONE:
                data.pop(key, None)
            else:
                data[key] = value
        if checkpoint is not None:
            self._checkpoint = checkpoint

    def checkpoint(self) -> int | None:
        return self._checkpoint

    def items(self) -> Iterator[tuple[str, Any]]:
        return iter(list(self._data.items()))

    def scan(self, start: str, end: str) -> Iterator[tuple[str, Any]]:
        # the keys are sorted once per batch that wrote (a store is written once per batch), not
        # once per scan: a join scans a key range per record
        keys = self._ordered
        if keys is None:
            keys = self._ordered = sorted(self._data)
        data = self._data
        return iter([(k, data[k]) for k in keys[bisect_left(keys, start) : bisect_left(keys, end)]])

    def __len__(self) -> int:
        return len(self._data)

    def size_bytes(self) -> int:
        return 0

    def close(self) -> None:
        self._data = {}
        self._ordered = None

    def destroy(self) -> None:
        self.close()
        self._checkpoint = None


class StorePathError(UserError):
    """A store path outside the state folder: nothing is created or deleted there."""


def inside(root: Path, path: Path) -> Path:
    """``path`` resolved (symlinks followed) if it lies within ``root`` (resolved too), else
    :class:`StorePathError`. Store paths are built from topology, table and instance names; the
    names are checked at validate, and this keeps a name that slips through (``..``, a ``/``) or
    a symlink from making the worker create, or delete as corrupt, a folder elsewhere."""
    try:
        base, resolved = root.resolve(), path.resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop
        raise StorePathError(f"local state at {path}: {exc}") from None
    if resolved == base or not resolved.is_relative_to(base):
        raise StorePathError(
            f"local state at {path} would be outside the state folder {base} (it resolves to "
            f"{resolved}): a '..' or '/' in a topology, table or instance name, or a symlink"
        )
    return resolved


def store_opener(kind: str, folder: Path, *, root: Path) -> Callable[[int], Store]:
    """Opens partition ``p`` of a table: a MemoryStore, or a RocksStore at ``folder/<p>``; a
    RocksDB store that is corrupt is deleted and started empty (it is then restored in full).
    ``folder`` must lie within ``root``, the state folder: checked here (a worker with a bad
    name stops at its start, with one line) and again before each store is opened or deleted."""
    if kind == "memory":
        return lambda partition: MemoryStore()
    inside(root, folder)

    def open_rocks(partition: int) -> Store:
        from stream_orch.state.rocks import RocksStore, StoreCorrupt

        path = inside(root, folder / str(partition))
        try:
            return RocksStore(path)
        except StoreCorrupt as exc:
            log.warning("local state cannot be trusted, rebuilding it from the changelog: %s", exc)
            shutil.rmtree(path, ignore_errors=True)
            return RocksStore(path)

    return open_rocks
