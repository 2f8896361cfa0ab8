"""RocksDB stores (rocksdict): one database per table partition under the worker's state folder.

The checkpoint lives in the database under a key no table key can have (table keys are text,
this one starts with a NUL byte), written in the same WriteBatch as the data it covers. A store
that cannot be opened or read (corrupt files, a foreign format) is reported by
:func:`open_store` as :class:`StoreCorrupt`; the caller destroys it and restores from the
changelog's beginning.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson
from rocksdict import Options, Rdict, WriteBatch

from stream_orch.state.store import TOMBSTONE

CHECKPOINT_KEY = b"\x00stream-orch.checkpoint"
COUNT_KEY = b"\x00stream-orch.count"  # exact number of keys: RocksDB only estimates it
FORMAT_KEY = b"\x00stream-orch.format"
FORMAT = b"1"


class StoreCorrupt(Exception):
    """A store on disk that cannot be trusted; it is rebuilt from the changelog."""


def _options() -> Options:
    opts = Options(raw_mode=True)
    opts.create_if_missing(True)
    opts.set_paranoid_checks(True)
    return opts


class RocksStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db: Rdict | None = Rdict(str(path), _options())
            found = self._db.get(FORMAT_KEY)
            checkpoint = self._db.get(CHECKPOINT_KEY)
            self._count = int(self._db.get(COUNT_KEY) or 0)
        except Exception as exc:
            self._db = None
            if "lock" in str(exc).lower():
                raise  # held by another process: not corrupt, and not ours to delete
            raise StoreCorrupt(f"{path}: {exc}") from exc
        if found is None and checkpoint is None:
            self._db.put(FORMAT_KEY, FORMAT)  # a new store
        elif found != FORMAT:
            self.close()
            raise StoreCorrupt(f"{path}: unknown format {found!r}")
        try:
            self._checkpoint = None if checkpoint is None else int(checkpoint)
        except ValueError:
            self.close()
            raise StoreCorrupt(f"{path}: unreadable checkpoint {checkpoint!r}") from None

    def get(self, key: str, default: Any = None) -> Any:
        assert self._db is not None
        raw = self._db.get(key.encode())
        return default if raw is None else orjson.loads(raw)

    def write(self, changes: Mapping[str, Any], checkpoint: int | None) -> None:
        db = self._db
        assert db is not None
        batch = WriteBatch(raw_mode=True)
        count = self._count
        for key, value in changes.items():
            raw = key.encode()
            # key_may_exist is exact when it says no (most new keys); a yes is checked with a get
            existed = db.key_may_exist(raw) and db.get(raw) is not None
            if value is TOMBSTONE:
                if existed:
                    batch.delete(raw)
                    count -= 1
            else:
                batch.put(raw, orjson.dumps(value))
                count += not existed
        batch.put(COUNT_KEY, str(count).encode())
        if checkpoint is not None:
            batch.put(CHECKPOINT_KEY, str(checkpoint).encode())
            self._checkpoint = checkpoint
        db.write(batch)
        self._count = count

    def checkpoint(self) -> int | None:
        return self._checkpoint

    def items(self) -> Iterator[tuple[str, Any]]:
        assert self._db is not None
        for key, raw in self._db.items():
            if not key.startswith(b"\x00"):
                yield key.decode(), orjson.loads(raw)

    def scan(self, start: str, end: str) -> Iterator[tuple[str, Any]]:
        assert self._db is not None
        stop = end.encode()
        it = self._db.iter()
        it.seek(start.encode())
        while it.valid():
            key = it.key()
            if key >= stop:
                break
            yield key.decode(), orjson.loads(it.value())
            it.next()

    def __len__(self) -> int:
        return self._count

    def size_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.path.glob("*") if f.is_file())

    def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            with contextlib.suppress(Exception):
                db.close()

    def destroy(self) -> None:
        self.close()
        shutil.rmtree(self.path, ignore_errors=True)
