"""What changed between two versions of a topology, in the topology's own terms.

The comparison is made on the validated models (:class:`TopologySpec`, dumped as JSON data: a
duration is ``5s``), never on the YAML text, so a comment, a reordered mapping or a duration
written ``5000ms`` instead of ``5s`` is no change. Lists whose order means something are aligned
item by item first: a node's steps (by kind and what names them: table, name, function...),
its routes (by condition, then by targets), a route's targets (by topic, or kind and name),
a score step's rules (by name). Each :class:`Change` points at the line of the new file (the old
file for a removal), found through the loader's line map.

Values under a target's ``headers`` and a mask step's ``key`` are secrets given from the
environment: a change there is reported without the values, and URLs lose their credentials.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from stream_orch.redact import REDACTED, redact_urls
from stream_orch.topology.loader import LoadedTopology, PathTuple
from stream_orch.topology.models_delivery import external_targets

__all__ = ["AREAS", "Change", "diff_topologies"]

Kind = Literal["added", "removed", "changed", "moved"]
Area = Literal["topology", "constant", "topic", "table", "node", "step", "route", "target", "error_policy"]
AREAS: tuple[Area, ...] = (
    "topology", "constant", "topic", "table", "node", "step", "route", "target", "error_policy",
)  # fmt: skip

_ABSENT: Any = type("_Absent", (), {"__repr__": lambda self: "<absent>"})()
_STEP_NAMES = ("table", "name", "function", "output", "as", "field", "topic")  # what names a step


@dataclass(frozen=True, slots=True)
class Change:
    """One difference. ``subject`` is what changed (``topic transactions``,
    ``score_transactions.score``), ``field`` which part of it (empty: the whole subject), ``old``
    and ``new`` its values as JSON data (None for an added or removed subject)."""

    kind: Kind
    area: Area
    subject: str
    field: str
    old: Any
    new: Any
    file: str
    line: int

    @property
    def message(self) -> str:
        what = f"{self.subject}: {self.field}" if self.field else self.subject
        if self.kind == "moved":
            return f"{what} moved from position {self.old} to {self.new}"
        if self.old is _ABSENT or (not self.field and self.kind == "added"):
            shown = f": {_show(self.new)}" if self.field else ""
            return f"{what} added{shown}"
        if self.new is _ABSENT or (not self.field and self.kind == "removed"):
            shown = f" (was {_show(self.old)})" if self.field else ""
            return f"{what} removed{shown}"
        return f"{what}: {_show(self.old)} -> {_show(self.new)}"

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"

    def as_json(self) -> dict[str, Any]:
        """Stable keys: kind, area, subject, field, old, new, file, line, message."""
        data = {key: getattr(self, key) for key in ("kind", "area", "subject", "field", "old", "new")}
        for key in ("old", "new"):
            data[key] = None if data[key] is _ABSENT else data[key]
        return {**data, "file": self.file, "line": self.line, "message": self.message}


def _show(value: Any) -> str:
    if value is _ABSENT:
        return "(none)"
    if isinstance(value, str):
        return redact_urls(value) if value else '""'
    return redact_urls(orjson.dumps(value).decode())


def diff_topologies(old: LoadedTopology, new: LoadedTopology) -> list[Change]:
    """Every change from ``old`` to ``new``, in the order of the topology file's sections."""
    return list(_Differ(old, new).run())


class _Differ:
    def __init__(self, old: LoadedTopology, new: LoadedTopology) -> None:
        self.old, self.new = old, new
        self.a = old.spec.model_dump(mode="json", by_alias=True)
        self.b = new.spec.model_dump(mode="json", by_alias=True)

    def change(
        self, kind: Kind, area: Area, subject: str, field: str, old: Any, new: Any, a_path: PathTuple,
        b_path: PathTuple,
    ) -> Change:  # fmt: skip
        old, new = _scrub(old), _scrub(new)
        if kind == "removed":
            return Change(kind, area, subject, field, old, new, self.old.file, self.old.line_of(a_path))
        return Change(kind, area, subject, field, old, new, self.new.file, self.new.line_of(b_path))

    def run(self) -> Iterator[Change]:
        sections = {"topics", "tables", "nodes", "constants"}
        top_a = {k: v for k, v in self.a.items() if k not in sections}
        top_b = {k: v for k, v in self.b.items() if k not in sections}
        yield from self.fields("topology", "topology", top_a, top_b, (), ())
        yield from self.keyed("constant", "constants", self.a["constants"], self.b["constants"])
        for section, area in (("topics", "topic"), ("tables", "table")):
            yield from self.keyed(area, section, self.a[section], self.b[section])
        for name, a_node, b_node in self.pairs(self.a["nodes"], self.b["nodes"]):
            path = ("nodes", name)
            if a_node is _ABSENT or b_node is _ABSENT:
                kind: Kind = "added" if a_node is _ABSENT else "removed"
                yield self.change(kind, "node", f"node {name}", "", None, None, path, path)
            else:
                yield from self.node(name, a_node, b_node)

    @staticmethod
    def pairs(a: dict[str, Any], b: dict[str, Any]) -> Iterator[tuple[str, Any, Any]]:
        for key in [*a, *(k for k in b if k not in a)]:
            yield key, a.get(key, _ABSENT), b.get(key, _ABSENT)

    def keyed(self, area: Area, section: str, a: dict[str, Any], b: dict[str, Any]) -> Iterator[Change]:
        for name, a_item, b_item in self.pairs(a, b):
            path = (section, name)
            if a_item is _ABSENT or b_item is _ABSENT:
                kind: Kind = "added" if a_item is _ABSENT else "removed"
                value = None if area != "constant" else (a_item if b_item is _ABSENT else b_item)
                old, new = (value, None) if kind == "removed" else (None, value)
                yield self.change(kind, area, f"{area} {name}", "", old, new, path, path)
            else:
                yield from self.fields(area, f"{area} {name}", a_item, b_item, path, path)

    def fields(
        self, area: Area, subject: str, a: Any, b: Any, a_path: PathTuple, b_path: PathTuple,
        label: str = "", secret: Callable[[tuple[str, ...]], bool] | None = None,
    ) -> Iterator[Change]:  # fmt: skip
        """The leaves that differ between ``a`` and ``b`` (mappings are compared key by key,
        lists and scalars as wholes); ``label`` is shown before each leaf's path."""
        for rel, old, new in _leaves(a, b, ()):
            hidden = "headers" in rel[:-1] or (secret is not None and secret(rel))
            if hidden:
                old = old if old is _ABSENT else REDACTED
                new = new if new is _ABSENT else REDACTED
            kind: Kind = "added" if old is _ABSENT else "removed" if new is _ABSENT else "changed"
            field = label + ".".join(rel)
            yield self.change(kind, area, subject, field, old, new, a_path + rel, b_path + rel)

    # ------------------------------------------------------------------ nodes

    def node(self, name: str, a: dict[str, Any], b: dict[str, Any]) -> Iterator[Change]:
        path = ("nodes", name)
        plain = [k for k in a if k not in ("steps", "routes", "errors")]
        yield from self.fields("node", f"node {name}", {k: a[k] for k in plain}, {k: b[k] for k in plain},
                               path, path)  # fmt: skip
        yield from self.steps(name, a["steps"], b["steps"])
        yield from self.routes(name, a["routes"], b["routes"])
        yield from self.fields("error_policy", f"{name} errors", a["errors"] or {}, b["errors"] or {},
                               (*path, "errors"), (*path, "errors"))  # fmt: skip

    def steps(self, node: str, a: list[dict[str, Any]], b: list[dict[str, Any]]) -> Iterator[Change]:
        a_kinds, b_kinds = [s["step"] for s in a], [s["step"] for s in b]

        def label(step: dict[str, Any], index: int) -> str:
            kind = step["step"]
            if a_kinds.count(kind) < 2 and b_kinds.count(kind) < 2:
                return f"step {node}.{kind}"
            return f"step {node}.{kind} {_step_ident(step) or f'#{index + 1}'}"

        def path(i: int) -> PathTuple:
            return ("nodes", node, "steps", i)

        pairs, removed, added = _align(a, b, [_frozen, lambda s: (s["step"], _step_ident(s)), _kind])
        for i in removed:
            yield self.change("removed", "step", label(a[i], i), "", None, None, path(i), path(i))
        for j in added:
            yield self.change("added", "step", label(b[j], j), "", None, None, path(j), path(j))
        moved = _moved(pairs)
        for i, j in pairs:
            subject = label(b[j], j)
            if (i, j) in moved:
                yield self.change("moved", "step", subject, "", i + 1, j + 1, path(i), path(j))
            yield from self.step(subject, a[i], b[j], path(i), path(j))

    def step(
        self, subject: str, a: dict[str, Any], b: dict[str, Any], a_path: PathTuple, b_path: PathTuple
    ) -> Iterator[Change]:
        kind = b["step"]
        if kind == "score":
            yield from self.rules(subject, a["rules"], b["rules"], a_path, b_path)
            a, b = _without(a, "rules"), _without(b, "rules")
        if (
            kind == "derive"
            and list(a["fields"]) != list(b["fields"])
            and set(a["fields"]) == set(b["fields"])
        ):
            # derived fields are computed in order: a later one may read an earlier one
            yield self.change("changed", "step", subject, "fields order", list(a["fields"]),
                              list(b["fields"]), a_path, (*b_path, "fields"))  # fmt: skip

        def secret(rel: tuple[str, ...]) -> bool:
            return kind == "mask" and rel == ("key",)

        yield from self.fields("step", subject, a, b, a_path, b_path, secret=secret)

    def rules(
        self, subject: str, a: list[dict[str, Any]], b: list[dict[str, Any]], a_path: PathTuple,
        b_path: PathTuple,
    ) -> Iterator[Change]:  # fmt: skip
        """Score rules by name: their sum does not depend on their order."""
        a_at = {r["name"]: i for i, r in enumerate(a)}
        b_at = {r["name"]: j for j, r in enumerate(b)}
        a_by = {r["name"]: _without(r, "name") for r in a}
        b_by = {r["name"]: _without(r, "name") for r in b}
        for (name, *inner), old, new in _leaves(a_by, b_by, ()):
            kind: Kind = "added" if old is _ABSENT else "removed" if new is _ABSENT else "changed"
            field = " ".join([f"rule {name}", *([".".join(inner)] if inner else [])])
            a_rule = (*a_path, "rules", a_at.get(name, 0), *inner)
            b_rule = (*b_path, "rules", b_at.get(name, 0), *inner)
            yield self.change(kind, "step", subject, field, old, new, a_rule, b_rule)

    # ------------------------------------------------------------------ routes

    def routes(self, node: str, a: list[dict[str, Any]], b: list[dict[str, Any]]) -> Iterator[Change]:
        def path(i: int) -> PathTuple:
            return ("nodes", node, "routes", i)

        a_names = _target_names(self.old, node)
        b_names = _target_names(self.new, node)
        pairs, removed, added = _align(
            a, b, [_frozen, _condition, lambda r: tuple(sorted(_targets(r, -1, {})))], same_place=True
        )
        for i in removed:
            yield self.change(
                "removed", "route", _route_label(node, i, a[i]), "", None, None, path(i), path(i)
            )
        for j in added:
            yield self.change("added", "route", _route_label(node, j, b[j]), "", None, None, path(j), path(j))
        moved = _moved(pairs)
        for i, j in pairs:
            subject = _route_label(node, j, b[j])
            if (i, j) in moved:
                # the first matching `when` fires: moving a route changes which records it gets
                yield self.change("moved", "route", subject, "", i + 1, j + 1, path(i), path(j))
            a_cond, b_cond = _condition(a[i]), _condition(b[j])
            if a_cond != b_cond:
                yield self.change(
                    "changed", "route", subject, "when", a_cond, b_cond, path(i), (*path(j), "when")
                )
            a_to, b_to = _targets(a[i], i, a_names), _targets(b[j], j, b_names)
            for key, a_t, b_t in self.pairs(a_to, b_to):
                area: Area = "route" if key.startswith("topic ") else "target"
                if a_t is _ABSENT or b_t is _ABSENT:
                    kind: Kind = "added" if a_t is _ABSENT else "removed"
                    k = (a_t if a_t is not _ABSENT else b_t)[0]
                    value = (a[i] if kind == "removed" else b[j])["to"][k]  # as written: a name or a mapping
                    yield self.change(kind, area, subject, "to", _ABSENT if kind == "added" else value,
                                      _ABSENT if kind == "removed" else value, (*path(i), "to", k),
                                      (*path(j), "to", k))  # fmt: skip
                    continue
                (ka, va), (kb, vb) = a_t, b_t
                inner = () if area == "route" else (key.split(" ")[0],)  # {http: {...}}: the target's keys
                yield from self.fields(area, subject, va, vb, (*path(i), "to", ka, *inner),
                                       (*path(j), "to", kb, *inner), label=f"to {key}: ")  # fmt: skip


# --------------------------------------------------------------------------- helpers


def _leaves(a: Any, b: Any, prefix: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any, Any]]:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in [*a, *(k for k in b if k not in a)]:
            yield from _leaves(a.get(key, _ABSENT), b.get(key, _ABSENT), (*prefix, str(key)))
    elif not _same(a, b):
        yield prefix, a, b


def _same(a: Any, b: Any) -> bool:
    """Equal as the topology means them: 1 and 1.0 are the same weight, true and 1 are not."""
    if a is _ABSENT or b is _ABSENT:
        return a is b
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


def _scrub(value: Any) -> Any:
    """``value`` with the values of every ``headers`` mapping in it hidden (secrets from the environment)."""
    if isinstance(value, dict):
        return {
            k: {h: REDACTED for h in v} if k == "headers" and isinstance(v, dict) else _scrub(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return redact_urls(value) if isinstance(value, str) else value


def _without(data: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k != key}


def _frozen(value: Any) -> Hashable:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def _kind(step: dict[str, Any]) -> Hashable:
    return step["step"]


def _step_ident(step: dict[str, Any]) -> str:
    return next((str(step[k]) for k in _STEP_NAMES if isinstance(step.get(k), str)), "")


def _condition(route: dict[str, Any]) -> str:
    if route.get("otherwise"):
        return "otherwise"
    return route["when"] if route.get("when") is not None else "always"


def _route_label(node: str, index: int, route: dict[str, Any]) -> str:
    cond = _condition(route)
    shown = cond if cond in ("otherwise", "always") else f"when {cond}"
    return f"route {node} #{index + 1} ({shown})"


def _target_names(loaded: LoadedTopology, node: str) -> dict[tuple[int, int], str]:
    return {(t.route, t.position): f"{t.kind} {t.name}" for t in external_targets(loaded.spec.nodes[node])}


def _targets(
    route: dict[str, Any], index: int, names: dict[tuple[int, int], str]
) -> dict[str, tuple[int, Any]]:
    """A route's targets by what names them (``topic fraud.alerts``, ``http crm``): (position, value)."""
    found: dict[str, tuple[int, Any]] = {}
    for k, entry in enumerate(route["to"]):
        if isinstance(entry, str):
            found[f"topic {entry}"] = (k, {"topic": entry, "key": None, "set": {}})  # as RouteTarget
        elif "topic" in entry:
            found[f"topic {entry['topic']}"] = (k, entry)
        else:
            kind = next(iter(entry))
            found[names.get((index, k), f"{kind} {entry[kind].get('name') or k + 1}")] = (k, entry[kind])
    return found


def _align(
    a: Sequence[Any], b: Sequence[Any], keys: Sequence[Callable[[Any], Hashable]], same_place: bool = False
) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """Pairs ``(i, j)`` of items that are the same thing in both lists, tried with each key in
    turn (the closest first), in list order, and with ``same_place`` items left at the same index
    (one item edited in several ways); then the indexes only in ``a`` and only in ``b``."""
    pairs: list[tuple[int, int]] = []
    free_a, free_b = list(range(len(a))), list(range(len(b)))
    for key in keys:
        for j in list(free_b):
            match = next((i for i in free_a if key(a[i]) == key(b[j])), None)
            if match is not None:
                pairs.append((match, j))
                free_a.remove(match)
                free_b.remove(j)
    if same_place:
        for i in [i for i in free_a if i in free_b]:
            pairs.append((i, i))
            free_a.remove(i)
            free_b.remove(i)
    return sorted(pairs, key=lambda p: p[1]), free_a, free_b


def _moved(pairs: list[tuple[int, int]]) -> set[tuple[int, int]]:
    """The pairs outside a longest run kept in order (``pairs`` sorted by new position): the
    fewest items whose move explains the new order. Among runs of that length, the one whose
    items moved least is kept; on a tie, the later items: an item moved up (the usual edit, to
    give a route or step priority) is reported, not the ones it passed."""
    n = len(pairs)
    score: list[tuple[int, int]] = []  # (length, -displacement) of the best run ending at x
    prev = [-1] * n
    for x, (i, j) in enumerate(pairs):
        best, before = (1, -abs(i - j)), -1
        for y in range(x):
            if pairs[y][0] < i:
                candidate = (score[y][0] + 1, score[y][1] - abs(i - j))
                if candidate >= best:
                    best, before = candidate, y
        score.append(best)
        prev[x] = before
    kept: set[int] = set()
    x = max(reversed(range(n)), key=lambda k: score[k]) if n else -1
    while x >= 0:
        kept.add(x)
        x = prev[x]
    return {pair for k, pair in enumerate(pairs) if k not in kept}
