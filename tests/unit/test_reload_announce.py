"""Reload announcements: what a worker writes on the audit topic, and what it takes from it (the
topic is not trusted: a malformed, foreign or own record is no announcement)."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from stream_orch.audit.events import AuditSubject, make_event
from stream_orch.runtime.announce import REFUSED, RELOADED, AnnouncementListener
from stream_orch.runtime.reload import Reloader
from stream_orch.runtime.versions import TopologyVersion, VersionStore
from stream_orch.topology.loader import load_topology
from tests.unit.test_reload_versions import SCHEMAS, Applied, edit, fraud_copy


class Written:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str, dict[str, Any]]] = []

    async def announce(
        self, action: str, topology: str, version: str, content_hash: str, details: dict[str, Any]
    ) -> None:
        self.events.append((action, topology, version, details))

    async def close(self) -> None:
        pass


def test_applied_and_refused_reloads_are_written_and_announced_ones_are_not(tmp_path: Path) -> None:
    path = fraud_copy(tmp_path)
    running = TopologyVersion.of(load_topology(path), path.read_text(), SCHEMAS)
    written = Written()
    store = VersionStore(tmp_path / "state", running.spec.topology)
    r = Reloader(running, path, SCHEMAS, store, Applied(), announcer=written)
    edit(path, "weight: 0.4}", "weight: 0.5}")
    asyncio.run(r.reload("SIGHUP"))  # same version: refused
    edit(path, 'version: "1.0.0"', 'version: "2"')
    asyncio.run(r.reload("SIGHUP"))
    asyncio.run(r.reload("SIGHUP"))  # unchanged: nothing to write
    asyncio.run(r.heard("1.0.0", "0" * 16))  # not this worker's content: nothing
    assert [(a, v) for a, _, v, _ in written.events] == [(REFUSED, "1.0.0"), (RELOADED, "2")]
    assert "new version" in written.events[0][3]["reason"]
    assert written.events[1][3] == {"trigger": "SIGHUP", "requested": "2", "from_version": "1.0.0"}


TOPOLOGY = "fraud_x"


def record(value: Any, key: bytes | None = TOPOLOGY.encode()) -> SimpleNamespace:
    raw = value if isinstance(value, bytes) else orjson.dumps(value)
    return SimpleNamespace(key=key, value=raw)


def other(**changes: Any) -> dict[str, Any]:
    event = orjson.loads(make_event(RELOADED, AuditSubject(TOPOLOGY, "2", "abcd" * 4)).to_json())
    event["pid"] = os.getpid() + 1
    event.update(changes)
    return event


async def _ignore(version: str, content_hash: str) -> None:
    pass


LISTENER = AnnouncementListener({}, "stream_orch.audit", TOPOLOGY, _ignore)


def test_another_workers_reload_of_this_topology_is_an_announcement() -> None:
    assert LISTENER._parse(record(other())) == ("2", "abcd" * 4)


@pytest.mark.parametrize(
    "rec",
    [
        record(other(), key=b"another_topology"),
        record(other(), key=None),
        record(other(action=REFUSED)),
        record(other(pid=os.getpid(), host=socket.gethostname())),  # this worker's own
        record(b"{not json"),
        record(b"\xff\xfe"),
        record([1, 2]),
        record(other(version=7)),
        record(other(content_hash=None)),
        record(other(version="v" * 300)),
        record(b" " * (70 * 1024)),
        SimpleNamespace(key=TOPOLOGY.encode(), value=None),
    ],
)
def test_anything_else_on_the_topic_is_not(rec: SimpleNamespace) -> None:
    assert LISTENER._parse(rec) is None
