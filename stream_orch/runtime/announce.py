"""Reload events in the audit trail, and the listener that makes the other workers of a
topology converge on an announced version.

An applied reload is an audit event (``reload``, through the worker's :class:`Auditor`) naming the
new version and its content hash, never its content: topics are not trusted to carry code, so a
worker that hears one applies it only from its own topology file, or from its own kept copy of
that version (a rollback), and only when the content hash is the same. Otherwise it logs one line
and keeps its version (the file is not rolled out to it yet). With auditing off
(``STREAM_ORCH_AUDIT=false``) nothing is announced: each worker must be reloaded itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiokafka import TopicPartition
from pydantic import ValidationError

from stream_orch.audit.events import REFUSED_RELOAD, RELOAD, AuditEvent, AuditSubject
from stream_orch.audit.log import Auditor
from stream_orch.transport import clients

log = logging.getLogger(__name__)

RELOADED = RELOAD  # the action of an applied reload: the others converge on it
REFUSED = REFUSED_RELOAD  # for the audit trail only
MAX_RECORD_BYTES = 64 * 1024  # an audit record is a few hundred bytes: anything larger is not one


class Announcer(Protocol):
    async def announce(
        self, action: str, topology: str, version: str, content_hash: str, details: dict[str, Any]
    ) -> None: ...

    async def close(self) -> None: ...


class AuditAnnouncer:
    """Writes reload events through the worker's auditor. An applied reload moves the auditor's
    subject to the new version first, so the event (and every later one) names it."""

    def __init__(self, auditor: Auditor) -> None:
        self._auditor = auditor

    async def announce(
        self, action: str, topology: str, version: str, content_hash: str, details: dict[str, Any]
    ) -> None:
        if action == RELOADED:
            self._auditor.subject = AuditSubject(topology, version, content_hash)
            await self._auditor.record(RELOADED, **details)
        else:
            await self._auditor.record(action, refused_version=version, refused_hash=content_hash, **details)

    async def close(self) -> None:
        pass  # the worker closes its auditor


Heard = Callable[[str, str], Awaitable[None]]  # (version, content hash)


class AnnouncementListener:
    """Reads the audit topic from its end (no group: every worker hears every announcement) and
    calls ``heard`` with the version and hash of each reload of ``topology`` by another process."""

    def __init__(self, client_args: dict[str, Any], audit_topic: str, topology: str, heard: Heard) -> None:
        self._client_args = client_args
        self._audit_topic = audit_topic
        self._topology = topology.encode()
        self._heard = heard
        self._self = (socket.gethostname(), os.getpid())

    async def run(self) -> None:
        consumer = clients.reader(self._client_args)
        await consumer.start()
        try:
            # the worker's auditor created the topic at start (one partition)
            partitions = consumer.partitions_for_topic(self._audit_topic) or {0}
            tps = [TopicPartition(self._audit_topic, p) for p in partitions]
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
            event = AuditEvent.from_json(record.value)
        except (ValueError, ValidationError):  # orjson's JSONDecodeError is a ValueError
            return None
        if event.action != RELOADED or event.topology != self._topology.decode():
            return None
        version, content_hash = event.version, event.content_hash
        if version is None or content_hash is None or len(version) > 200:
            return None
        if (event.host, event.pid) == self._self:
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
