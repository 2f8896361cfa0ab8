"""The audit record: one JSON object per audited action, the only definition of its fields.

An event says who (host, user, pid) did what (``action``) to which topology (name, version and
a content hash of its file and the schemas it names) and when, plus ``details``: a flat map of
small values about the action (counts, names of topics, a ledger id). It never carries the
contents of a record (no keys, values or header values): the helpers of :mod:`.log` take only
what the callers pass, and ``details`` accepts only scalars, short strings and lists or maps of
them, so a record would have to be put there on purpose.

The record type lives here and not in ``schemas/``: ``schemas/*.avsc`` are the user's record
types, found next to each topology file (every deployment has its own folder), while the audit
record is the engine's own, like the replay and ingest ledgers' records.
"""

from __future__ import annotations

import getpass
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import orjson
from pydantic import BaseModel, ConfigDict, StringConstraints

from stream_orch.topology.content import topology_hash

if TYPE_CHECKING:
    from stream_orch.topology.models import TopologySpec

# The actions audited today; another module adds one by naming it here and recording it.
WORKER_START = "worker_start"
WORKER_STOP = "worker_stop"
WORKER_UNCLEAN_STOP = "worker_unclean_stop"  # found at the next start: the previous one was killed
NODE_RESTART = "node_restart"
DLQ_REPLAY = "dlq_replay"
INGEST = "ingest"
SINK_INIT = "sink_init"
RELOAD = "reload"
REFUSED_RELOAD = "refused_reload"
SHADOW_START = "shadow_start"
FORGET = "forget"  # an erasure request: the subject by a keyed digest, never its key

MAX_TEXT = 300  # a detail string longer than this is cut (a filter expression, an error message)

Text = Annotated[str, StringConstraints(max_length=MAX_TEXT)]
Scalar = Text | bool | int | float | None
Detail = Scalar | list[Scalar] | dict[str, Scalar]


def _cut(value: object) -> object:
    if isinstance(value, str) and len(value) > MAX_TEXT:
        return value[: MAX_TEXT - 1] + "…"
    if isinstance(value, list | tuple):
        return [_cut(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _cut(v) for k, v in value.items()}
    return value


class AuditEvent(BaseModel):
    """One audited action. Field names are the JSON keys on the audit topic."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    time: datetime
    action: str
    topology: str | None = None
    version: str | None = None
    content_hash: str | None = None
    host: str
    user: str
    pid: int
    details: dict[str, Detail] = {}

    @property
    def key(self) -> bytes | None:
        """The record key: the topology, so one topology's events stay in order."""
        return self.topology.encode() if self.topology else None

    def to_json(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json"))

    @classmethod
    def from_json(cls, data: bytes) -> AuditEvent:
        """Raises ``pydantic.ValidationError`` (or ``orjson.JSONDecodeError``) for what is not one."""
        return cls.model_validate(orjson.loads(data))


@dataclass(frozen=True, slots=True)
class AuditSubject:
    """What an event is about: a topology as loaded (name, version, content hash), or nothing
    (a tool run outside a topology, e.g. ``ingest``)."""

    topology: str | None = None
    version: str | None = None
    content_hash: str | None = None

    @classmethod
    def of_topology(cls, spec: TopologySpec, path: Path | None, schema_dir: Path | None) -> AuditSubject:
        """``spec`` as loaded from ``path``: its hash covers the file and every file it reads
        (schemas, python modules, models: ``topology.content``, the hash `reload` uses too);
        without ``path``, no hash."""
        if path is None:
            return cls(spec.topology, spec.version)
        return cls(spec.topology, spec.version, topology_hash(path, spec, schema_dir))


NOBODY = AuditSubject()


def os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a uid without a passwd entry (some containers)
        return f"uid:{os.getuid()}"


def make_event(
    action: str, subject: AuditSubject, *, user: str | None = None, **details: object
) -> AuditEvent:
    """An event of ``action`` about ``subject``, now, by this process (``user`` overrides the OS
    user: ``STREAM_ORCH_AUDIT_USER``). Strings in ``details`` longer than MAX_TEXT are cut."""
    return AuditEvent.model_validate(
        {
            "time": datetime.now(UTC),
            "action": action,
            "topology": subject.topology,
            "version": subject.version,
            "content_hash": subject.content_hash,
            "host": socket.gethostname(),
            "user": user or os_user(),
            "pid": os.getpid(),
            "details": {k: _cut(v) for k, v in details.items()},
        }
    )
