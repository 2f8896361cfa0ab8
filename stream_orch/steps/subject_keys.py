"""Which entries of a step's table belong to one data subject: the erasure side of each layout.

``stream-orch forget`` removes a subject's entries from the tables keyed by them. A step keeps
more than one entry per key (a dedupe identifier and its time-index entries, an aggregate key and
its chunks, a window per start time, a join's buffered records and their index), so each layout
says here, beside the constants it is built from, which table keys carry the subject's key. The
step's own entries that belong to no key (a window's or a join's watermarks) are never chosen.

:func:`subject_matcher` returns, for a step that writes a table and is keyed by ``field``, a
predicate on table keys; for any other step None. Only an exact field name chooses a step: a
step keyed by another field (dedupe by ``txn_id``) holds entries of the subject too, but under
keys nothing here can tell apart, and guessing would erase other people's entries.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stream_orch.steps import dedupe, join, window_state, windows
from stream_orch.steps.table_keys import record_key

Matcher = Callable[[str], bool]


def key_fields(step: Any) -> tuple[str, ...]:
    """The record fields that key the table a step writes (empty: a layout we cannot read)."""
    kind = getattr(step, "step", None)
    if kind == "dedupe":
        return (step.field,)
    if kind in ("aggregate", "window"):
        return (step.key,)
    if kind == "join":
        return tuple(dict.fromkeys((step.key, step.other_key or step.key)))
    return ()


def dedupe_matcher(value: Any) -> Matcher:
    """The identifier's entry and its time-index entries ``<RS><bucket><RS><identifier>``. The
    index is local state now (a restore deletes an erased identifier's entry with it); a changelog
    written before may still hold index records, and those are the subject's too."""
    ident = record_key(value)
    at = len(dedupe.index_key(0, ""))

    def match(key: str) -> bool:
        return key == ident or (key.startswith(dedupe.INDEX) and key[at:] == ident)

    return match


def aggregate_matcher(value: Any) -> Matcher:
    """The key's record and its chunks ``<key><US><id>`` (an escaped key holds no US)."""
    k = record_key(value)
    chunk = k + windows.SEPARATOR

    def match(key: str) -> bool:
        return key == k or key.startswith(chunk)

    return match


def window_matcher(value: Any) -> Matcher:
    """The key's sessions ``<GS><key>`` and its windows or session pointers
    ``<RS><close><RS><start><RS><key>`` (the window step keys by ``str(value)``)."""
    k = value if value.__class__ is str else str(value)
    sessions = window_state.SESSIONS + k
    index = window_state.INDEX

    def match(key: str) -> bool:
        if key == sessions:
            return True
        if not key.startswith(index):
            return False
        parts = key.split(index, 3)
        return len(parts) == 4 and parts[3] == k

    return match


def join_matcher(value: Any) -> Matcher:
    """Both sides' buffered records ``L|R<US><key><US>...`` and their time-index entries
    ``<RS><side><expiry><RS><entry>``; not the watermarks."""
    k = record_key(value)
    prefixes = tuple(f"{side}{join.SEP}{k}{join.SEP}" for side in (join.LEFT, join.RIGHT))

    def match(key: str) -> bool:
        if key.startswith(prefixes):
            return True
        if not key.startswith(join.INDEX):
            return False
        parts = key.split(join.INDEX, 2)
        return len(parts) == 3 and parts[2].startswith(prefixes)

    return match


_MATCHERS: dict[str, Callable[[Any], Matcher]] = {
    "dedupe": dedupe_matcher,
    "aggregate": aggregate_matcher,
    "window": window_matcher,
    "join": join_matcher,
}


def subject_matcher(step: Any, field: str, value: Any) -> Matcher | None:
    """A predicate on the table keys of ``step``'s table that belong to ``field == value``, or
    None when the step does not write a table keyed by ``field``."""
    if field not in key_fields(step):
        return None
    return _MATCHERS[step.step](value)
