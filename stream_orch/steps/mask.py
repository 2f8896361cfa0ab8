"""``mask``: hash or drop PII fields.

``hash`` replaces a value by ``hashlib.sha256(salt.encode("utf-8") + str(value).encode("utf-8"))
.hexdigest()``: the lowercase hex SHA-256 digest of the salt's UTF-8 bytes followed by the
value's text in UTF-8 (no separator). A null or missing value stays null or missing.
``drop`` removes the field. Records are changed in place.
"""

from __future__ import annotations

import hashlib
from typing import Any

from stream_orch.steps.base import Event, StepContext
from stream_orch.steps.common import StepBuild
from stream_orch.topology.models import MaskStep


def salted_sha256(salt: str, value: Any) -> str:
    """The digest ``mask`` writes for ``value`` (handy for tests and for joining on it)."""
    return hashlib.sha256(salt.encode("utf-8") + str(value).encode("utf-8")).hexdigest()


class MaskStepImpl:
    @classmethod
    def from_spec(cls, spec: MaskStep, build: StepBuild) -> MaskStepImpl:
        return cls(dict(spec.fields), spec.salt, name=build.name)

    def __init__(self, fields: dict[str, str], salt: str = "", *, name: str = "mask") -> None:
        self.name = name
        self._hash = tuple(f for f, how in fields.items() if how == "hash")
        self._drop = tuple(f for f, how in fields.items() if how == "drop")
        self._salted = hashlib.sha256(salt.encode("utf-8"))

    async def run(self, events: list[Event], ctx: StepContext) -> list[Event]:
        hashed, dropped, salted = self._hash, self._drop, self._salted
        for event in events:
            record = event.value
            for field in hashed:
                value = record.get(field)
                if value is not None:
                    h = salted.copy()
                    h.update((value if value.__class__ is str else str(value)).encode("utf-8"))
                    record[field] = h.hexdigest()
            for field in dropped:
                record.pop(field, None)
        return events
