"""Where audit events go: the audit topic, or nowhere.

``AuditLog`` is the one writer API. :func:`audit_log` gives a :class:`KafkaAuditLog` or, with
auditing off (``STREAM_ORCH_AUDIT=false``), a :class:`NullAuditLog`, so callers never check.

Two ways a write can fail, two answers:

* a **worker** (``strict=False``) logs a warning, counts the failure (the
  ``on_failure`` callback: ``stream_orch_audit_write_failures_total``) and keeps processing:
  an audit topic that cannot be written must not stop the data path;
* a **tool** (``strict=True``: ``dlq replay``, ``ingest``, ``sink init --apply``) opens the log
  before it changes anything, so an audit topic that cannot be written stops it with one line
  before any write, and a record that fails afterwards makes it exit non-zero saying what was
  done without a record. A replay nobody can trace is worse than no replay.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

from aiokafka import AIOKafkaProducer

from stream_orch.audit.events import AuditEvent, AuditSubject, make_event
from stream_orch.errors import UserError
from stream_orch.settings import Settings
from stream_orch.transport.connect import start_producer
from stream_orch.transport.topics import ensure_log_topic

log = logging.getLogger(__name__)

# Audits are read after an incident or at a review, months later; the volume is a few events
# per start, stop, restart or tool run, so a year costs kilobytes. Deletion, never compaction:
# compaction would keep only the last event of each topology.
AUDIT_RETENTION_MS = 365 * 86_400_000


class AuditLog(Protocol):
    def event(self, action: str, subject: AuditSubject, **details: object) -> AuditEvent:
        """An event of ``action`` by this process, now (see :func:`.events.make_event`)."""
        ...

    async def record(self, event: AuditEvent) -> bool:
        """Write ``event``; True once the broker has it. Strict logs raise instead of False."""
        ...

    def post(self, event: AuditEvent) -> None:
        """Write ``event`` in the background, for callers that must not wait (a node's loop)."""
        ...

    async def start(self) -> None:
        """Create the topic if needed and connect; strict logs raise a UserError when they cannot."""
        ...

    async def close(self) -> None:
        """Finish what :meth:`post` started (bounded) and disconnect."""
        ...


class NullAuditLog:
    """Auditing off: events are made (callers' code is the same) and dropped."""

    def __init__(self, user: str | None = None) -> None:
        self.user = user

    def event(self, action: str, subject: AuditSubject, **details: object) -> AuditEvent:
        return make_event(action, subject, user=self.user, **details)

    async def record(self, event: AuditEvent) -> bool:
        return True

    def post(self, event: AuditEvent) -> None: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class KafkaAuditLog(NullAuditLog):
    def __init__(
        self, settings: Settings, *, strict: bool, on_failure: Callable[[], None] | None = None
    ) -> None:
        super().__init__(settings.audit_user)
        self.settings = settings
        self.topic = settings.audit_topic
        self.strict = strict
        self._on_failure = on_failure
        self._producer: AIOKafkaProducer | None = None
        self._pending: set[asyncio.Task[bool]] = set()
        self._starting = asyncio.Lock()  # posts made while the broker is away must not each connect

    async def start(self) -> None:
        async with self._starting:
            if self._producer is not None:
                return
            try:
                await ensure_log_topic(self.settings, self.topic, AUDIT_RETENTION_MS)
                self._producer = await start_producer(self.settings)
            except Exception as exc:
                self._failed(f"cannot open the audit topic {self.topic}: {_reason(exc)}")

    async def record(self, event: AuditEvent) -> bool:
        try:
            await self.start()
            if self._producer is None:
                return False
            await asyncio.wait_for(
                self._producer.send_and_wait(self.topic, event.to_json(), key=event.key),
                self.settings.request_timeout_s,
            )
            return True
        except UserError:
            raise
        except Exception as exc:
            self._failed(f"audit record {event.action} not written to {self.topic}: {_reason(exc)}")
            return False

    def post(self, event: AuditEvent) -> None:
        task = asyncio.get_running_loop().create_task(self.record(event))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def close(self) -> None:
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=self.settings.request_timeout_s)
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                await producer.stop()
            except Exception as exc:  # the records are acknowledged; nothing is lost here
                log.debug("audit producer did not stop cleanly: %r", exc)

    def _failed(self, message: str) -> None:
        if self.strict:
            # exit 3, as for an unreachable Kafka: `ingest --watch` stops on it instead of going on unaudited
            raise UserError(
                f"{message} (auditing can be turned off with STREAM_ORCH_AUDIT=false)", exit_code=3
            )
        log.warning(message)
        if self._on_failure is not None:
            self._on_failure()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer from Kafka"
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def audit_log(settings: Settings, *, strict: bool, on_failure: Callable[[], None] | None = None) -> AuditLog:
    """The audit log ``settings`` ask for: Kafka, or a null log when auditing is off."""
    if not settings.audit:
        return NullAuditLog(settings.audit_user)
    return KafkaAuditLog(settings, strict=strict, on_failure=on_failure)


class Auditor:
    """An audit log bound to what its events are about: the one-line API of the engine and the
    tools, ``await auditor.record(RELOAD, to_version="7")``. A worker that reloads its topology
    sets ``subject`` to the new version; every later event names it."""

    def __init__(self, log: AuditLog, subject: AuditSubject) -> None:
        self.log = log
        self.subject = subject

    async def record(self, action: str, **details: object) -> bool:
        return await self.log.record(self.log.event(action, self.subject, **details))

    def post(self, action: str, **details: object) -> None:
        self.log.post(self.log.event(action, self.subject, **details))

    async def start(self) -> None:
        await self.log.start()

    async def close(self) -> None:
        await self.log.close()
