"""Table keys taken from record values, kept apart from the keys a step builds for itself.

Steps keep entries of their own beside the keys they take from records (dedupe's time index,
a join's buffered records, time index and watermarks, aggregate's chunks), marked by the ASCII
separators ESC to US (0x1b-0x1f). Record values are untrusted and may contain those characters,
so a key taken from one is escaped: each of them becomes ESC and a printable character (ESC ->
``ESC [``, US -> ``ESC _``), which no other text becomes. An escaped key contains no FS, GS, RS
or US, so it never begins one of a step's own keys nor ends early inside one. Text without
control characters (nearly every key) is left as it is, so stores written before keep their keys.
"""

from __future__ import annotations

from typing import Any

_ESCAPES = {c: f"\x1b{chr(c + 0x40)}" for c in range(0x1B, 0x20)}


def record_key(value: Any) -> str:
    """The table key for a record's identifier or key field: ``str(value)``, escaped."""
    text = value if value.__class__ is str else str(value)
    return text if text.isprintable() else text.translate(_ESCAPES)
