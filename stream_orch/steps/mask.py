"""``mask``: hash or drop PII fields.

``hash`` replaces a value by ``hmac.new(key.encode("utf-8"), str(value).encode("utf-8"),
hashlib.sha256).hexdigest()``: the lowercase hex HMAC-SHA256 of the value's text in UTF-8 under
the step's ``key``. A keyed MAC, not a salted hash: without the key nobody can recompute the
digest of a guessed email. A null or missing value stays null or missing. ``drop`` removes the
field. Records are changed in place.

The key comes from the environment (``key: "${STREAM_ORCH_MASK_KEY:}"`` in the shipped
topologies). Without one the step uses :data:`DEMO_KEY`, which is public, so the demo runs with
nothing set; the first such step a process builds logs a warning that names the variable.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from itertools import islice
from typing import Any

from stream_orch.steps.base import Event, StepContext
from stream_orch.steps.common import StepBuild
from stream_orch.topology.models import MaskStep

log = logging.getLogger(__name__)

# The variable the shipped topologies read the key from, named in the warning.
KEY_ENV = "STREAM_ORCH_MASK_KEY"
# Public (it is in this file): digests under it protect nothing. For demos and tests only.
DEMO_KEY = "stream-orch-demo-mask-key"
_BLOCK = 64  # SHA-256's block size: the HMAC key is padded (or first hashed) to it
# digests of string values kept per step (the older half is forgotten when full): a customer's
# email comes back with each of their transactions, and a hit costs 0.05 us against 1.3 us for
# the HMAC. 8,192 kept too few at 25,000 customers (the 1 M-record benchmark's): every email was
# forgotten before it came back, 0.4 -> 0.9 us per fraud event. At most about 6 MB per step; the
# plaintexts are no new exposure, the enrichment's global table holds the same values.
_DIGESTS_KEPT = 32_768
_warned = False  # the demo-key warning is logged once per process, not once per node or restart


def hmac_sha256(key: str, value: Any) -> str:
    """The digest ``mask`` writes for ``value`` under ``key`` (for tests and for joining on it)."""
    return hmac.new(key.encode("utf-8"), str(value).encode("utf-8"), hashlib.sha256).hexdigest()


class MaskStepImpl:
    @classmethod
    def from_spec(cls, spec: MaskStep, build: StepBuild) -> MaskStepImpl:
        return cls(dict(spec.fields), spec.key, name=build.name)

    def __init__(self, fields: dict[str, str], key: str = "", *, name: str = "mask") -> None:
        self.name = name
        self._hash = tuple(f for f, how in fields.items() if how == "hash")
        self._drop = tuple(f for f, how in fields.items() if how == "drop")
        if not key:
            key = DEMO_KEY
            if self._hash:
                _warn_demo_key(name)
        # HMAC (RFC 2104) with the padded key hashed once: each value copies the inner and outer
        # sha256 states. 1.3 us a value against 1.9 us for copying an hmac.HMAC (which wraps
        # the same two states in Python objects); the plain salted sha256 took 0.8 us.
        block = key.encode("utf-8")
        if len(block) > _BLOCK:
            block = hashlib.sha256(block).digest()
        block = block.ljust(_BLOCK, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))
        self._digests: dict[str, str] = {}

    async def run(self, events: list[Event], ctx: StepContext) -> list[Event]:
        hashed, dropped, inner, outer = self._hash, self._drop, self._inner, self._outer
        digests = self._digests
        for event in events:
            record = event.value
            for field in hashed:
                value = record.get(field)
                if value is not None:
                    text = value if value.__class__ is str else str(value)
                    digest = digests.get(text)
                    if digest is None:
                        h = inner.copy()
                        h.update(text.encode("utf-8"))
                        o = outer.copy()
                        o.update(h.digest())
                        digest = o.hexdigest()
                        if len(digests) >= _DIGESTS_KEPT:
                            _forget_older_half(digests)
                        digests[text] = digest
                    record[field] = digest
            for field in dropped:
                record.pop(field, None)
        return events


def _forget_older_half(digests: dict[str, str]) -> None:
    # dicts keep insertion order: the first half are the values hashed longest ago (clearing all
    # of it at once left a working set a little over the bound with almost no hits)
    for text in list(islice(digests, len(digests) // 2)):
        del digests[text]


def _warn_demo_key(step: str) -> None:
    global _warned
    if _warned:
        return
    _warned = True
    log.warning(
        "%s: no mask key, so `hash` uses the public demo key and anyone can recompute the digests of "
        "guessable values; set %s (or the variable the step's `key: ${VAR}` reads) to a secret",
        step,
        KEY_ENV,
    )
