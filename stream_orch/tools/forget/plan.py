"""What ``stream-orch forget`` erases, decided from the topology alone (no Kafka).

The subject is named explicitly, ``--key FIELD=VALUE``: a table is chosen when the field that
keys it is FIELD, by name and nothing else.

- A table a step writes (dedupe, aggregate, window, join) is keyed by the step's key field; its
  entries live in the changelog ``<topology>.<table>.changelog`` and in the stores of the
  workers of the nodes that run the step. Which of its keys belong to the subject is the step's
  layout (:mod:`stream_orch.steps.subject_keys`).
- A table fed by a topic is keyed by its ``key`` (default: the topic's key); its entry is the
  topic's record with that key, erased with a tombstone on the topic (every worker follows it).

Tables keyed by another field are left alone and listed as such, and so is a table a step of a
layout this module cannot read writes (a ``python`` step's): nothing is erased by guessing. The
topics where records of the subject may still be (they are not rewritten: Kafka has no delete
by key but compaction) are listed with their retention.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stream_orch.errors import UserError
from stream_orch.steps.subject_keys import Matcher, key_fields, subject_matcher
from stream_orch.topology.durations import format_duration_ms
from stream_orch.topology.models import TopologySpec
from stream_orch.topology.naming import changelog_topic, dlq_topic, group_id, retry_topics
from stream_orch.topology.repartition import expand

CHANGELOG = "changelog"
FEED = "feed"


@dataclass
class Target:
    """One table chosen: the topic whose records make it, and which of their keys are the subject's."""

    table: str
    how: str  # CHANGELOG (a step writes it) or FEED (a topic feeds it)
    topic: str
    keyed_by: str  # e.g. "aggregate account_velocity by account_id"
    match: Matcher = field(repr=False)
    groups: list[str] = field(default_factory=list)  # consumer groups of the nodes holding it


@dataclass
class Plan:
    topology: str
    field: str
    targets: list[Target]
    left: list[str]  # tables not chosen, each with why
    topics: dict[str, str]  # topic -> why records of the subject may still be there, and how long

    @property
    def groups(self) -> list[str]:
        return sorted({g for t in self.targets for g in t.groups})


def parse_subject(text: str) -> tuple[str, str]:
    """``FIELD=VALUE`` -> (field, value); a bad one is one line."""
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not name or not value:
        raise UserError(
            f"--key: {text!r} is not FIELD=VALUE (the field that keys the tables, and the subject's "
            "value as the tables hold it, e.g. customer_id=C-000123)"
        )
    return name, value


def subject_digest(field_name: str, value: str, secret: str) -> str:
    """HMAC-SHA256 of ``field=value`` under ``secret``: the audit record names the subject by it.
    Not a plain hash: identifiers are few and guessable (a million customer ids are hashed in a
    second), so an unkeyed digest would name the person to anyone reading the audit topic."""
    return hmac.new(secret.encode(), f"{field_name}={value}".encode(), hashlib.sha256).hexdigest()


def _retention(spec: TopologySpec, topic: str) -> str:
    t = spec.topics.get(topic)
    if t is None:
        return "its retention"
    if t.compact:
        return "a newer record or a tombstone of the key replaces it (compacted)"
    if t.retention is not None:
        return f"retention ({format_duration_ms(t.retention)}) expires"
    return "the broker's default retention expires"


def _topic_notes(
    spec: TopologySpec, field_name: str, schema_fields: Callable[[str], list[str] | None], fed: set[str]
) -> dict[str, str]:
    notes: dict[str, str] = {}
    holding = set()
    for name, topic in spec.topics.items():
        fields = schema_fields(topic.schema_) if topic.schema_ else None
        if topic.key == field_name or (fields is not None and field_name in fields):
            holding.add(name)
            if name in fed:
                what = "tombstoned; its older records stay in the log until compaction cleans them"
                notes[name] = what
            else:
                notes[name] = f"may hold records of this subject until {_retention(spec, name)}"
    for node in spec.nodes.values():
        if node.input in holding:
            for topic in [*retry_topics(node), dlq_topic(node)]:
                notes[topic] = (
                    f"may hold records of this subject (copies of records of {node.input}) "
                    "until its retention expires"
                )
    return notes


def _feed_key(spec: TopologySpec, table: str) -> str | None:
    """The field keying a table fed by a topic (its own ``key``, else its topic's); None for a
    table a step writes, or one keyed by the bare record key."""
    t = spec.tables[table]
    if t.topic is None:
        return None
    topic = spec.topics.get(t.topic)
    return t.key or (topic.key if topic is not None else None)


def plan(
    spec: TopologySpec,
    field_name: str,
    value: str,
    schema_fields: Callable[[str], list[str] | None] = lambda name: None,
) -> Plan:
    """The tables of ``spec`` keyed by ``field_name`` and the subject's keys in each; raises
    :class:`UserError` when no table is keyed by it (naming the fields that key the tables)."""
    run = expand(spec)  # the nodes as the workers run them (a repartition splits a node)
    targets: dict[str, Target] = {}
    left: dict[str, str] = {}
    writers: dict[str, set[tuple[str, ...]]] = {}  # table -> the key fields of each step writing it
    for node_name, node in run.nodes.items():
        for step in node.steps:
            table = getattr(step, "table", None)
            if not table or not step.writes_table or run.tables[table].topic is not None:
                continue
            if step.step == "tick":  # a scheduled node's own table: the last tick fired, no subject
                continue
            fields = key_fields(step)
            writers.setdefault(table, set()).add(fields)
            match = subject_matcher(step, field_name, value)
            if match is None:
                by = f"by {', '.join(fields)}" if fields else "by a layout forget cannot read"
                left.setdefault(table, f"{table} ({step.step} {by}): not keyed by {field_name}, left as is")
                continue
            target = targets.get(table)
            if target is None:
                target = targets[table] = Target(
                    table, CHANGELOG, changelog_topic(run.topology, table),
                    f"{step.step} by {field_name}", match,
                )  # fmt: skip
            else:  # two steps keyed by the field write one table: either layout's keys
                first = target.match
                target.match = lambda key, a=first, b=match: a(key) or b(key)  # type: ignore[misc]
            group = group_id(run.topology, node_name)
            if group not in target.groups:
                target.groups.append(group)
    for name, table in run.tables.items():
        if table.topic is None:
            continue
        keyed = _feed_key(run, name)
        if keyed == field_name:
            targets[name] = Target(name, FEED, table.topic, f"fed by {table.topic}, keyed by {field_name}",
                                   lambda key: key == value)  # fmt: skip
        else:
            left[name] = (
                f"{name} (fed by {table.topic}, keyed by {keyed or 'its record key'}): "
                f"not keyed by {field_name}, left as is"
            )
    for name in left.keys() & targets.keys():  # written by steps keyed by different fields
        raise UserError(
            f"--key: table {name} is written by steps keyed by different fields "
            f"({'; '.join(', '.join(f) or '?' for f in sorted(writers[name]))}): which of its keys are "
            f"{field_name}'s cannot be told, so nothing is erased"
        )
    if not targets:
        keys = {f for n in run.nodes.values() for s in n.steps for f in key_fields(s)}
        keys.update(k for name in run.tables if (k := _feed_key(run, name)))
        raise UserError(
            f"--key: no table of {spec.topology} is keyed by {field_name!r} "
            f"(its tables are keyed by: {', '.join(sorted(keys)) or 'nothing'})"
        )
    fed = {t.topic for t in targets.values() if t.how == FEED}
    return Plan(
        spec.topology, field_name, list(targets.values()), sorted(left.values()),
        _topic_notes(spec, field_name, schema_fields, fed),
    )  # fmt: skip


def render(plan_: Plan, removed: dict[str, int], dry_run: bool, scanned: dict[str, int] | None = None) -> str:
    """The report: per table what was (or would be) removed, counts only; then the topics (with
    the records of the subject found in each, when they were scanned)."""
    verb = "would remove" if dry_run else "removed"
    dry = " (dry run: nothing written)" if dry_run else ""
    lines = [f"forget {plan_.field}=<subject> in {plan_.topology}{dry}"]
    for t in plan_.targets:
        where = "changelog " if t.how == CHANGELOG else "topic "
        lines.append(
            f"  table {t.table} ({t.keyed_by}): {verb} {removed.get(t.table, 0)} entries ({where}{t.topic})"
        )
    for why in plan_.left:
        lines.append(f"  table {why}")
    if plan_.topics:
        lines.append("records of this subject may still be in:")
        for topic, note in plan_.topics.items():
            found = "" if scanned is None else f" [scanned: {scanned.get(topic, 0)} records of this subject]"
            lines.append(f"  {topic}: {note}{found}")
    changelogs = [t.topic for t in plan_.targets if t.how == CHANGELOG]
    if changelogs and not dry_run:
        lines.append(
            "the changelogs keep the erased values in their logs until the log cleaner compacts them "
            "(tombstones: delete.retention.ms); workers restore without them from now on"
        )
    return "\n".join(lines)


def as_json(
    plan_: Plan, removed: dict[str, int], dry_run: bool, scanned: dict[str, int] | None = None
) -> dict[str, Any]:
    return {
        "topology": plan_.topology,
        "field": plan_.field,
        "dry_run": dry_run,
        "tables": {
            t.table: {"removed": removed.get(t.table, 0), "topic": t.topic, "how": t.how}
            for t in plan_.targets
        },
        "left": plan_.left,
        "topics": [
            {"topic": topic, "note": note, "records": None if scanned is None else scanned.get(topic, 0)}
            for topic, note in plan_.topics.items()
        ],
    }
