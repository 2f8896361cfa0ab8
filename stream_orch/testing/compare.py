"""Expected records against the records a topic got: partial match on fields, order per key,
and a diff a person can read (the field, what was expected, what came out)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import orjson

from stream_orch.testing.records import OutputRecord

SHOWN_CHARS = 240  # an unexpected record is shown up to this many characters


@dataclass
class Expected:
    """One expected record: ``value`` is matched partially (the fields given must be equal,
    nested mappings too; lists whole; numbers to 1e-9), ``headers`` likewise, and the fields in
    ``absent`` must not be there."""

    line: int
    key: str | None = None
    value: Any = None
    has_value: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    absent: list[str] = field(default_factory=list)

    def key_for(self, key_field: str | None) -> str | None:
        """The record key this expects: ``key``, else the topic's key field of ``value``."""
        if self.key is not None:
            return self.key
        if key_field and isinstance(self.value, dict) and self.value.get(key_field) is not None:
            return str(self.value[key_field])
        return None


Diff = tuple[str, Any, Any]  # (field path, expected, got)
MISSING: Any = type("Missing", (), {"__repr__": lambda self: "(missing)"})()


def differences(expected: Expected, got: OutputRecord) -> list[Diff]:
    out: list[Diff] = []
    if expected.key is not None and got.key != expected.key:
        out.append(("key", expected.key, got.key))
    if expected.has_value:
        if isinstance(expected.value, dict) and isinstance(got.value, dict):
            _diff_fields("", expected.value, got.value, out)
        elif not _equal(expected.value, got.value):
            out.append(("value", expected.value, got.value))
    for name in expected.absent:
        if isinstance(got.value, dict) and name in got.value:
            out.append((name, MISSING, got.value[name]))
    for name, want in expected.headers.items():
        have = got.headers.get(name, MISSING)
        if have != want:
            out.append((f"header {name}", want, have))
    return out


def _diff_fields(prefix: str, want: dict[str, Any], have: dict[str, Any], out: list[Diff]) -> None:
    for name, value in want.items():
        path = f"{prefix}{name}"
        if name not in have:
            out.append((path, value, MISSING))
        elif isinstance(value, dict) and isinstance(have[name], dict):
            _diff_fields(f"{path}.", value, have[name], out)
        elif not _equal(value, have[name]):
            out.append((path, value, have[name]))


def _equal(want: Any, have: Any) -> bool:
    if isinstance(want, dict):
        return isinstance(have, dict) and all(k in have and _equal(v, have[k]) for k, v in want.items())
    if isinstance(want, list):
        return isinstance(have, list) and len(want) == len(have) and all(map(_equal, want, have))
    if isinstance(want, bool) or isinstance(have, bool):
        return want is have
    if isinstance(want, int | float) and isinstance(have, int | float):
        return math.isclose(want, have, rel_tol=1e-9, abs_tol=1e-9)
    return bool(want == have)


def compare_topic(
    topic: str, line: int, expected: list[Expected], got: list[OutputRecord], key_field: str | None
) -> list[str]:
    """What differs between ``expected`` and ``got`` (the records ``topic`` got, in order); empty
    when they match. An expected record with a key (given, or the topic's key field of its
    value) is compared with the next record of that key: order counts per key only. One without
    is matched with any record left that matches, else reported against the closest one (the
    same first field, then the fewest differences). Every record must be expected: extra ones
    are reported."""
    problems: list[str] = []
    used = [False] * len(got)
    by_key: dict[str | None, list[int]] = {}
    for i, record in enumerate(got):
        by_key.setdefault(record.key, []).append(i)
    seen: dict[str | None, int] = {}  # records of each key compared so far
    for want in expected:
        key = want.key_for(key_field)
        if key is not None:
            n = seen.get(key, 0)
            seen[key] = n + 1
            candidates = [i for i in by_key.get(key, []) if not used[i]]
            if not candidates:
                problems.append(
                    f"{topic}: missing record {n + 1} of key {key} (line {want.line}): {_show(want)}"
                )
                continue
            i = candidates[0]
            used[i] = True
            diffs = differences(want, got[i])
            if diffs:
                problems.append(_mismatch(topic, f"record {n + 1} of key {key}", want.line, diffs))
            continue
        left = [i for i in range(len(got)) if not used[i]]
        match = next((i for i in left if not differences(want, got[i])), None)
        if match is not None:
            used[match] = True
            continue
        if not left:
            problems.append(f"{topic}: missing record (line {want.line}): {_show(want)}")
            continue
        closest = min(left, key=lambda i: _distance(want, got[i]))
        used[closest] = True
        diffs = differences(want, got[closest])
        problems.append(_mismatch(topic, f"record of key {got[closest].key}", want.line, diffs))
    extra = [got[i] for i in range(len(got)) if not used[i]]
    for record in extra:
        problems.append(f"{topic}: unexpected record, key {record.key}: {_short(record.value)}")
    return problems


def _distance(want: Expected, got: OutputRecord) -> tuple[bool, int]:
    """How far a record is from an expected one: first whether the first field given (what names
    the record, as a txn_id) differs, then how many fields differ."""
    diffs = differences(want, got)
    first = next(iter(want.value), None) if isinstance(want.value, dict) else None
    return (first is not None and any(path == first for path, _, _ in diffs), len(diffs))


def compare_table(table: str, keys: dict[str, tuple[int, Any]], content: dict[str, Any]) -> list[str]:
    """Each expected key's value in ``content`` (null: the key must be absent)."""
    problems = []
    for key, (line, want) in keys.items():
        have = content.get(key, MISSING)
        if want is None:
            if have is not MISSING:
                problems.append(
                    f"table {table}, key {key} (line {line}): expected absent, got {_short(have)}"
                )
            continue
        if have is MISSING:
            problems.append(f"table {table}, key {key} (line {line}): missing, expected {_short(want)}")
            continue
        diffs: list[Diff] = []
        if isinstance(want, dict) and isinstance(have, dict):
            _diff_fields("", want, have, diffs)
        elif not _equal(want, have):
            diffs.append(("value", want, have))
        if diffs:
            problems.append(_mismatch(f"table {table}", f"key {key}", line, diffs))
    return problems


def _mismatch(where: str, what: str, line: int, diffs: list[Diff]) -> str:
    width = max(len(path) for path, _, _ in diffs)
    lines = [f"{where}, {what} (line {line}):"]
    for path, want, have in diffs:
        lines.append(f"    {path.ljust(width)}  expected {_short(want)}")
        lines.append(f"    {''.ljust(width)}  got      {_short(have)}")
    return "\n".join(lines)


def _show(want: Expected) -> str:
    parts = []
    if want.has_value:
        parts.append(_short(want.value))
    if want.headers:
        parts.append(f"headers {_short(want.headers)}")
    return " ".join(parts) or "(any record)"


def _short(value: Any) -> str:
    if value is MISSING:
        return "(missing)"
    try:
        shown = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        shown = repr(value)
    return shown if len(shown) <= SHOWN_CHARS else shown[: SHOWN_CHARS - 3] + "..."
