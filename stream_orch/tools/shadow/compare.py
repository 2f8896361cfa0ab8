"""The shadow report's join and counts, on records already read (no Kafka here).

Every output record of a version names its input in its lineage headers (``so.src.topic``,
``so.src.partition``, ``so.src.offset``), every dead letter in ``so.error.topic/partition/offset``.
Grouped by that input, each version gives the input a *route*: the topics of the version's
conditional routes (those with ``when`` or ``otherwise``) it reached, joined by ``+``; all its
topics when it reached none of those (a node without conditional routes); ``dlq`` when it was
dead-lettered; ``(none)`` when it left nothing (filtered, a duplicate, still waiting for a
retry). The report counts the routes of each version and the inputs whose route differs (the
moves).

Which inputs are compared: per source partition, from the later of the two versions' first
input seen (the shadow starts at the live group's offsets or at ``--from-time``; the live
version's outputs may reach back days) up to the earlier of the two groups' committed offsets
(what both have finished). Inputs outside that window are left out of every count.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

Source = tuple[str, int, int]  # input topic, partition, offset
NONE = "(none)"
DLQ = "dlq"
MAX_SHOWN = 80  # characters of a value in an example


@dataclass(frozen=True)
class Output:
    """One record a version wrote: the topic as the live version names it, the input it came
    from, its decoded value (None when it was not JSON/Avro we could read), and for a dead
    letter its reason's code."""

    topic: str
    source: Source
    value: dict[str, Any] | None = None
    dlq_reason: str | None = None


@dataclass
class Version:
    """One version's records and what the report needs to know of its topology."""

    outputs: list[Output]
    conditional: set[str]  # topics of routes with `when` or `otherwise`
    score_fields: list[str] = field(default_factory=list)  # the fields score steps write
    committed: dict[tuple[str, int], int] = field(default_factory=dict)  # (topic, partition) -> next offset

    def by_source(self) -> dict[Source, list[Output]]:
        found: dict[Source, list[Output]] = {}
        for out in self.outputs:
            found.setdefault(out.source, []).append(out)
        return found

    def route(self, outs: list[Output]) -> str:
        topics = {o.topic for o in outs if o.dlq_reason is None}
        chosen = topics & self.conditional or topics
        parts = sorted(chosen) + ([DLQ] if any(o.dlq_reason is not None for o in outs) else [])
        return "+".join(parts) if parts else NONE

    def score(self, outs: list[Output]) -> float | None:
        for out in outs:
            for name in self.score_fields:
                value = (out.value or {}).get(name)
                if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                    return float(value)
        return None


def window(
    live: dict[Source, list[Output]], shadow: dict[Source, list[Output]], lv: Version, sv: Version
) -> dict[tuple[str, int], tuple[int, int]]:
    """(topic, partition) -> [first, end) of the input offsets both versions have processed."""
    spans: dict[tuple[str, int], tuple[int, int]] = {}
    for tp in {s[:2] for s in live} & {s[:2] for s in shadow}:
        firsts, ends = [], []
        for seen, version in ((live, lv), (shadow, sv)):
            offsets = [s[2] for s in seen if s[:2] == tp]
            firsts.append(min(offsets))
            ends.append(version.committed.get(tp, max(offsets) + 1))
        if max(firsts) < min(ends):
            spans[tp] = (max(firsts), min(ends))
    return spans


def compare(
    live: Version, shadow: Version, *, examples: int = 5, masked: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """The report as a dict (the JSON format; the text format prints it)."""
    live_by, shadow_by = live.by_source(), shadow.by_source()
    spans = window(live_by, shadow_by, live, shadow)

    def inside(source: Source) -> bool:
        span = spans.get(source[:2])
        return span is not None and span[0] <= source[2] < span[1]

    sources = sorted(s for s in set(live_by) | set(shadow_by) if inside(s))
    routes: dict[str, Counter[str]] = {"live": Counter(), "shadow": Counter()}
    topics: dict[str, Counter[str]] = {"live": Counter(), "shadow": Counter()}
    moves: Counter[tuple[str, str]] = Counter()
    deltas: list[float] = []
    newly, gone = Counter[str](), Counter[str]()
    shown: list[dict[str, Any]] = []
    for source in sources:
        old_outs, new_outs = live_by.get(source, []), shadow_by.get(source, [])
        old, new = live.route(old_outs), shadow.route(new_outs)
        routes["live"][old] += 1
        routes["shadow"][new] += 1
        topics["live"].update(o.topic for o in old_outs)
        topics["shadow"].update(o.topic for o in new_outs)
        old_score, new_score = live.score(old_outs), shadow.score(new_outs)
        if old_score is not None and new_score is not None:
            deltas.append(round(new_score - old_score, 9))
        old_dlq = _reason(old_outs)
        new_dlq = _reason(new_outs)
        if new_dlq is not None and old_dlq is None:
            newly[new_dlq] += 1
        if old_dlq is not None and new_dlq is None:
            gone[old_dlq] += 1
        if old != new:
            moves[(old, new)] += 1
            if len(shown) < examples:
                shown.append(_example(source, old, new, old_outs, new_outs, old_score, new_score, masked))
    return {
        "window": {
            "inputs": len(sources),
            "partitions": {f"{t}[{p}]": list(span) for (t, p), span in sorted(spans.items())},
        },
        "topics": _side_by_side(topics),
        "routes": _side_by_side(routes),
        "moves": [
            {"from": a, "to": b, "count": n}
            for (a, b), n in sorted(moves.items(), key=lambda m: (-m[1], m[0]))
        ],
        "moved": sum(moves.values()),
        "score": _score_summary(deltas),
        "dead_letters": {"new": dict(newly), "no_longer": dict(gone)},
        "examples": shown,
    }


def _reason(outs: list[Output]) -> str | None:
    return next((o.dlq_reason for o in outs if o.dlq_reason is not None), None)


def _side_by_side(counts: dict[str, Counter[str]]) -> dict[str, dict[str, int]]:
    names = sorted(set(counts["live"]) | set(counts["shadow"]))
    return {n: {"live": counts["live"][n], "shadow": counts["shadow"][n]} for n in names}


def quantile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default)."""
    position = (len(sorted_values) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def _score_summary(deltas: list[float], bins: int = 10) -> dict[str, Any] | None:
    """new - old of the inputs both versions scored: how many changed, quantiles, a histogram of
    the changed ones in ``bins`` equal bins."""
    if not deltas:
        return None
    ordered = sorted(deltas)
    changed = [d for d in ordered if d != 0]
    summary: dict[str, Any] = {
        "compared": len(ordered),
        "unchanged": len(ordered) - len(changed),
        "mean": sum(ordered) / len(ordered),
        "quantiles": {f"p{int(q * 100)}": quantile(ordered, q) for q in (0, 0.01, 0.1, 0.5, 0.9, 0.99, 1)},
        "histogram": [],
    }
    if changed:
        low, high = changed[0], changed[-1]
        width = (high - low) / bins if high > low else 1.0
        counts = Counter(min(int((d - low) / width), bins - 1) for d in changed)
        summary["histogram"] = [
            {"from": low + i * width, "to": low + (i + 1) * width if high > low else high, "count": counts[i]}
            for i in range(bins if high > low else 1)
        ]
    return summary


def _example(
    source: Source,
    old: str,
    new: str,
    old_outs: list[Output],
    new_outs: list[Output],
    old_score: float | None,
    new_score: float | None,
    masked: frozenset[str],
) -> dict[str, Any]:
    """One moved input: its lineage, both routes, the score, and the fields whose values differ
    between the two versions (all outputs of the input merged per version, the first value of a
    field kept, topics in name order; values of the topology's masked fields are never shown,
    others are cut to a few characters)."""
    before, after = _merged(old_outs), _merged(new_outs)
    changed = {}
    for name in sorted(set(before) | set(after)):
        if before.get(name) != after.get(name):
            changed[name] = (
                ["(masked)", "(masked)"]
                if name in masked
                else [_shown(before.get(name)), _shown(after.get(name))]
            )
    return {
        "source": {"topic": source[0], "partition": source[1], "offset": source[2]},
        "from": old,
        "to": new,
        "score": [old_score, new_score],
        "dlq_reason": [_reason(old_outs), _reason(new_outs)],
        "changed": changed,
    }


def _merged(outs: list[Output]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for out in sorted(outs, key=lambda o: o.topic):
        for name, value in (out.value or {}).items():
            fields.setdefault(name, value)
    return fields


def _shown(value: Any) -> Any:
    if isinstance(value, str | list | dict) and len(str(value)) > MAX_SHOWN:
        return str(value)[: MAX_SHOWN - 3] + "..."
    return value
