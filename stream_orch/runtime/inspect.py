"""What ops can see of a running worker's local tables (``/tables`` on its HTTP endpoint and
``stream-orch table``): per table and partition the keys, bytes on disk and the checkpoint, and
one key's current value."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from stream_orch.state.tables import LocalTable


class TableInspector:
    def __init__(self, tables: Callable[[], Iterable[tuple[str, LocalTable]]]) -> None:
        self._tables = tables  # (node, table) of every node's local tables, as they are now

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for node, table in self._tables():
            out[table.name] = {
                "node": node,
                "changelog": table.changelog,
                "partitions": {str(p): table.partition_stats(p) for p in sorted(table.partitions())},
            }
        return out

    def lookup(self, name: str, key: str) -> dict[str, Any] | None:
        """The key's value in the partition of this worker that holds it (None: no such table)."""
        for node, table in self._tables():
            if table.name != name:
                continue
            for partition in sorted(table.partitions()):
                value = table.get(key, partition)
                if value is not None:
                    return {"table": name, "node": node, "key": key, "partition": partition, "value": value}
            return {"table": name, "node": node, "key": key, "partition": None, "value": None}
        return None
