"""Lint of scheduled nodes (``schedule:`` instead of ``input:``): the tables a tick scans exist
and are fed by a topic, the node has no steps that need an input stream, its errors policy has
no retry tiers, and the fields its steps see are the scanned rows' plus ``tick_time``."""

from __future__ import annotations

from collections.abc import Callable

from stream_orch.topology.models import (
    AggregateStep,
    DedupeStep,
    JoinStep,
    NodeSpec,
    TopologySpec,
    WindowStep,
)
from stream_orch.topology.models_flow import RepartitionStep
from stream_orch.topology.models_schedule import TICK_FIELD
from stream_orch.topology.naming import ticks_table, ticks_topic
from stream_orch.topology.problems import Severity
from stream_orch.topology.schema_fields import suggest

PathTuple = tuple[str | int, ...]
Add = Callable[[PathTuple, str, str, Severity], None]

# Steps that need a stream of records in offset and event-time order: a tick's rows are the
# tables' current contents, emitted again at every tick, with the tick as their only time.
_STREAM_ONLY = {
    DedupeStep: "every tick emits the same rows again: a dedupe would drop them from the second tick on",
    WindowStep: "a tick's rows have no event time of their own (their time is the tick)",
    JoinStep: "a join needs an input stream to join with",
    AggregateStep: "an aggregate needs an input stream (a tick emits the same rows again: a running "
    "aggregate would count them at every tick)",
    RepartitionStep: "a tick's rows can be routed to a topic that another node reads",
}


def schedule_clashes(written: TopologySpec, add: Add) -> None:
    """A topic or table named like the internal ones a scheduled node gets (schedule_expand)."""
    for name, node in written.nodes.items():
        if node.schedule is None:
            continue
        topic, table = ticks_topic(written.topology, name), ticks_table(name)
        if topic in written.topics:
            add(
                ("topics", topic),
                f"topic `{topic}` is the internal ticks topic of scheduled node `{name}`",
                "remove the declaration (the engine creates it), or rename the node",
                "error",
            )
        if table in written.tables:
            add(
                ("tables", table),
                f"table `{table}` is the internal table of scheduled node `{name}` (its last tick)",
                "rename the table or the node",
                "error",
            )


def punctuate_problems(name: str, node: NodeSpec, add: Add) -> None:
    """``punctuate`` closes windows: a node with nothing to punctuate is refused."""
    if node.punctuate is None:
        return
    path: PathTuple = ("nodes", name, "punctuate")
    if node.schedule is not None:
        add(
            path,
            f"node `{name}`: a scheduled node has no input partitions to punctuate",
            "remove it",
            "error",
        )
    elif not any(isinstance(s, WindowStep) for s in node.steps):
        add(
            path,
            f"node `{name}`: `punctuate` closes the windows of idle partitions, and the node has no "
            "window step",
            "remove it, or add a `window` step",
            "error",
        )


def schedule_fields(
    spec: TopologySpec,
    name: str,
    node: NodeSpec,
    add: Add,
    topic_fields: Callable[[str | None], list[str] | None],
) -> set[str] | None:
    """Check scheduled node ``name``; the fields its first step sees (None: unknown)."""
    assert node.schedule is not None
    base: PathTuple = ("nodes", name)
    fields: set[str] | None = None
    known = True
    for i, scan in enumerate(node.schedule.scan):
        path: PathTuple = (*base, "schedule", "scan", i)
        table = spec.tables.get(scan.table)
        if table is None:
            add(
                path,
                f"node `{name}`: the schedule scans unknown table `{scan.table}`",
                suggest(scan.table, spec.tables, "tables"),
                "error",
            )
            known = False
            continue
        if table.topic is None:
            add(
                path,
                f"node `{name}`: the schedule scans table `{scan.table}`, which steps write (split by "
                "their node's partitions, so no one worker holds it all)",
                "route the rows to a compacted topic and scan a table fed by it (`tables.<t>.topic`)",
                "error",
            )
            known = False
            continue
        row_fields = topic_fields(table.topic)
        if row_fields is None:
            known = False
        else:  # the rows of every scanned table flow through the same steps
            fields = set(row_fields) if fields is None else fields & set(row_fields)
    for i, step in enumerate(node.steps):
        why = _STREAM_ONLY.get(type(step))
        if why is not None:
            add(
                (*base, "steps", i),
                f"node `{name}`: a scheduled node cannot have a {step.step} step: {why}",
                "move the step to a node that reads a topic",
                "error",
            )
    if node.errors is not None and node.errors.retry is not None:
        add(
            (*base, "errors", "retry"),
            f"node `{name}`: a scheduled node has no retry tiers (its rows are read again at the next tick)",
            "remove `retry:`; failed rows go to the DLQ with their reason",
            "error",
        )
    return fields | {TICK_FIELD} if known and fields is not None else None
