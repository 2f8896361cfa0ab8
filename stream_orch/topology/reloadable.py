"""Which changes of a topology a running worker may take without a restart.

A reload swaps the compiled steps and routes of every node at a batch boundary and keeps
everything else: consumers, offsets, transactions, tables and their changelogs. So a change may
only touch what is computed per record and held nowhere:

- ``constants`` (values read by expressions);
- a ``score`` step's rules (their ``when``, i.e. the thresholds, their weights, adding or
  removing a rule), its ``cap``, ``round`` and ``logistic`` terms;
- a ``filter`` step's ``when``;
- the expression of a field a ``derive`` step already computes (adding or removing a field
  changes the record's layout for every later step and output: refused);
- a route's ``when`` (a route with a condition keeps one; one without stays without) and the
  ``set`` values of its Kafka targets;
- ``version`` and every ``description``;
- a topic's ``audience`` and ``pii`` policy (what lint checks; nothing runs on them).

Everything else changes state layout, topics, tables, keys, step order or kind, schemas, the
processing guarantee or the error policy, and needs a restart. The models are compared, not
the text: comments and formatting never matter.
"""

from __future__ import annotations

import json
import re
from typing import Any

from stream_orch.topology.models import TopologySpec

Path = tuple[str | int, ...]

#: the kinds of step that keep state in memory between batches (event-time marks, windows being
#: built): a reload keeps their objects as they are, so no change may reach them, a constant
#: their expressions read included
KEEPS_STATE = frozenset({"dedupe", "aggregate", "window", "join"})

_ITEM = {"steps": "a step", "routes": "a route", "to": "a target", "rules": "a rule"}


def reload_problems(old: TopologySpec, new: TopologySpec) -> list[str]:
    """One line per change of ``new`` against ``old`` that a running worker cannot take, each
    with the path of the change; empty when ``new`` may be applied by a reload."""
    problems: list[str] = []
    before, after = _dump(old), _dump(new)
    _walk(before, after, (), problems)
    problems += _constants_of_stateful_steps(before, after)
    return problems


def _constants_of_stateful_steps(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """A changed or removed constant that a step keeping state reads (a whole-word mention in
    the step: cautious, an expression's string literal of that name counts too)."""
    changed = [k for k in old["constants"] if old["constants"][k] != new["constants"].get(k, ...)]
    problems = []
    for name, node in old["nodes"].items():
        for i, step in enumerate(node["steps"]):
            if step["step"] not in KEEPS_STATE:
                continue
            text = json.dumps(step)
            for constant in changed:
                if re.search(rf"\b{re.escape(constant)}\b", text):
                    problems.append(
                        f"constants.{constant}: read by nodes.{name}.steps[{i}] ({step['step']}), which "
                        "keeps state (needs a restart)"
                    )
    return problems


def _dump(spec: TopologySpec) -> dict[str, Any]:
    return spec.model_dump(mode="json", by_alias=True)


def _allowed(path: Path, old: Any, new: Any, root_old: dict[str, Any]) -> bool:
    """``path`` (in both versions) may change from ``old`` to ``new`` at a batch boundary."""
    if not path:
        return False
    if path[-1] == "description" or path[0] in ("version", "constants"):
        return True
    if path[0] == "topics" and len(path) == 3 and path[2] in ("audience", "pii"):
        return True
    if path[0] != "nodes" or len(path) < 5:
        return False
    node = root_old["nodes"].get(path[1])
    if node is None:
        return False
    kind, index, rest = path[2], path[3], path[4:]
    if kind == "steps" and isinstance(index, int) and index < len(node["steps"]):
        step = node["steps"][index]["step"]
        if step == "score":
            return rest[0] in ("rules", "cap", "round", "logistic")
        if step == "filter":
            return rest == ("when",)
        if step == "derive":  # an existing field's expression, not the set of fields
            return len(rest) == 2 and rest[0] == "fields" and old is not None and new is not None
        return False
    if kind == "routes" and isinstance(index, int):
        if rest == ("when",):
            return old is not None and new is not None
        # the `set` of a Kafka target (an external target's fields are not `set`)
        return len(rest) >= 3 and rest[0] == "to" and rest[2] == "set"
    return False


def _walk(old: Any, new: Any, path: Path, problems: list[str], root: Any = None) -> None:
    root = old if root is None else root
    if old == new or _allowed(path, old, new, root):
        return
    if isinstance(old, dict) and isinstance(new, dict):
        if path and path[0] == "nodes" and len(path) == 4 and old.get("step") != new.get("step"):
            problems.append(
                f"{_show(path)}: the step changed from {old.get('step')} to {new.get('step')} "
                "(needs a restart)"
            )
            return
        for key in [*old, *(k for k in new if k not in old)]:
            if key not in new:
                if not _allowed((*path, key), old[key], None, root):
                    problems.append(f"{_show((*path, key))}: removed (needs a restart)")
            elif key not in old:
                if not _allowed((*path, key), None, new[key], root):
                    problems.append(f"{_show((*path, key))}: added (needs a restart)")
            else:
                _walk(old[key], new[key], (*path, key), problems, root)
        return
    if isinstance(old, list) and isinstance(new, list):
        # items kept before and after an insertion or removal are compared with their own
        # (by a step's kind): one step added is one line, not a change of every later step
        head = tail = 0
        shortest = min(len(old), len(new))
        while head < shortest and _kind(old[head]) == _kind(new[head]):
            head += 1
        while tail < shortest - head and _kind(old[-1 - tail]) == _kind(new[-1 - tail]):
            tail += 1
        if len(old) == len(new):
            head, tail = len(old), 0
        pairs = [(i, i) for i in range(head)]
        pairs += [(len(old) - 1 - t, len(new) - 1 - t) for t in range(tail)]
        middle_old, middle_new = range(head, len(old) - tail), range(head, len(new) - tail)
        pairs += list(zip(middle_old, middle_new, strict=False))
        for i, j in sorted(pairs):
            _walk(old[i], new[j], (*path, j), problems, root)
        item = _ITEM.get(str(path[-1]) if path else "", "an item")
        common = min(len(middle_old), len(middle_new))
        for j in middle_new[common:]:
            problems.append(f"{_show((*path, j))}: {item} was added (needs a restart)")
        for i in middle_old[common:]:
            problems.append(f"{_show((*path, i))}: {item} was removed (needs a restart)")
        return
    problems.append(f"{_show(path)}: changed from {_short(old)} to {_short(new)} (needs a restart)")


def _kind(item: Any) -> Any:
    return item.get("step", item) if isinstance(item, dict) else item


def _show(path: Path) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "<topology>"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
