"""Reload announcements on the audit topic, and the listener that makes the other workers of a
topology converge on the announced version.

An announcement names a version (topology, version, content hash), never its content: topics
are not trusted to carry code, so a worker that hears one applies it only from its own topology
file, or from its own kept copy of that version (a rollback), and only when the content hash is
the same. Otherwise it logs one line and keeps its version (the file is not rolled out to it yet).

The record is a minimal form of the audit trail's events (JSON, key = topology); the audit model
replaces :func:`reload_event` when it lands.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import orjson
from aiokafka import TopicPartition

from stream_orch.runtime.admin import TopicPlan, ensure_topics
from stream_orch.transport import clients

log = logging.getLogger(__name__)

AUDIT_TOPIC = "stream_orch.audit"
RELOADED = "reload"  # the action of an applied reload: the others converge on it
REFUSED = "reload_refused"  # for the audit trail only
MAX_RECORD_BYTES = 64 * 1024  # an audit record is a few hundred bytes: anything larger is not one


class Announcer(Protocol):
    async def announce(
        self, action: str, topology: str, version: str, content_hash: str, details: dict[str, Any]
    ) -> None: ...

    async def close(self) -> None: ...


def reload_event(
    action: str, topology: str, version: str, content_hash: str, details: dict[str, Any]
) -> dict[str, Any]:
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "action": action,
        "topology": topology,
        "version": version,
        "content_hash": content_hash,
        "host": socket.gethostname(),
        "user": _user(),
        "pid": os.getpid(),
        "details": details,
    }


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


class KafkaAnnouncer:
    """Writes reload events to the audit topic (created with one partition when missing)."""

    def __init__(self, client_args: dict[str, Any]) -> None:
        self._client_args = client_args
        self._producer: Any = None

    async def announce(
        self, action: str, topology: str, version: str, content_hash: str, details: dict[str, Any]
    ) -> None:
        if self._producer is None:
            await ensure_topics(self._client_args, [TopicPlan(AUDIT_TOPIC, 1)])
            self._producer = clients.producer(self._client_args)
            await self._producer.start()
        event = reload_event(action, topology, version, content_hash, details)
        await self._producer.send_and_wait(AUDIT_TOPIC, orjson.dumps(event), key=topology.encode())

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()


Heard = Callable[[str, str], Awaitable[None]]  # (version, content hash)


class AnnouncementListener:
    """Reads the audit topic from its end (no group: every worker hears every announcement) and
    calls ``heard`` with the version and hash of each reload of ``topology`` by another process."""

    def __init__(self, client_args: dict[str, Any], topology: str, heard: Heard) -> None:
        self._client_args = client_args
        self._topology = topology.encode()
        self._heard = heard
        self._self = (socket.gethostname(), os.getpid())

    async def run(self) -> None:
        await ensure_topics(self._client_args, [TopicPlan(AUDIT_TOPIC, 1)])
        consumer = clients.reader(self._client_args)
        await consumer.start()
        try:
            partitions = consumer.partitions_for_topic(AUDIT_TOPIC) or {0}
            tps = [TopicPartition(AUDIT_TOPIC, p) for p in partitions]
            consumer.assign(tps)
            await consumer.seek_to_end(*tps)  # announcements made before this worker ran are not for it
            while True:
                batches = await consumer.getmany(timeout_ms=1000)
                for records in batches.values():
                    for record in records:
                        heard = self._parse(record)
                        if heard is not None:
                            await self._heard(*heard)
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()

    def _parse(self, record: Any) -> tuple[str, str] | None:
        """(version, content hash) of another process's reload of this topology; None for any
        other record, a malformed one included (the topic is not trusted)."""
        if record.key != self._topology or not record.value or len(record.value) > MAX_RECORD_BYTES:
            return None
        try:
            event = orjson.loads(record.value)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(event, dict) or event.get("action") != RELOADED:
            return None
        version, content_hash = event.get("version"), event.get("content_hash")
        if not isinstance(version, str) or not isinstance(content_hash, str) or len(version) > 200:
            return None
        if (event.get("host"), event.get("pid")) == self._self:
            return None
        return version, content_hash


async def listen_forever(listener: AnnouncementListener) -> None:
    """Run ``listener``; a broken connection restarts it after a pause (never the worker)."""
    while True:
        try:
            await listener.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("reload announcements: %r; listening again in 5s", exc)
            await asyncio.sleep(5)
