"""The data-flow graph of a topology, and its drawing as Mermaid or Graphviz DOT.

Topics feed nodes; nodes route to topics and to targets outside Kafka (HTTP...), write and read
tables; tables are fed by topics.
Retry topics (``<input>.retry.<n>``) and the DLQ (``<input>.dlq``) are implied by each
node's error policy; a DLQ named by ``errors.dlq`` is shown as that (not as implied). Their
edges are drawn dashed red, so the picture shows every topic a running topology touches.

Routes are numbered from 1 in the order written, as ``validate`` reports them and as the
``route`` label of the ``stream_orch_events_out_total`` metric names them (:func:`route_label`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from stream_orch.topology.models import (
    AggregateStep,
    DedupeStep,
    EnrichStep,
    JoinStep,
    LookupManyStep,
    NodeSpec,
    RouteSpec,
    TopologySpec,
    WindowStep,
)
from stream_orch.topology.models_delivery import external_targets
from stream_orch.topology.models_schedule import TickStep
from stream_orch.topology.repartition import expand, repartition_labels

__all__ = [
    "Edge",
    "FlowGraph",
    "build_graph",
    "dlq_topic",
    "find_cycles",
    "retry_topics",
    "route_label",
    "to_dot",
    "to_mermaid",
    "topics_of",
]

_WRITERS = (DedupeStep, AggregateStep, WindowStep, TickStep)  # steps drawn writing their table

EdgeKind = Literal["input", "join", "route", "retry", "dlq", "feed", "lookup", "write"]


@dataclass(frozen=True, slots=True)
class Edge:
    """``src`` and ``dst`` are vertex ids: ``topic:<name>``, ``node:<name>``, ``table:<name>`` or
    ``target:<node>/<name>`` (a target outside Kafka)."""

    src: str
    dst: str
    kind: EdgeKind
    label: str = ""


@dataclass(slots=True)
class FlowGraph:
    name: str
    topics: dict[str, bool] = field(default_factory=dict)  # topic -> declared (False: not in `topics:`)
    named_dlqs: set[str] = field(default_factory=set)  # undeclared topics set by `errors.dlq`
    nodes: list[str] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)
    # targets outside Kafka: "<node>/<name>" -> "<kind>: <name>" (vertex id target:<node>/<name>)
    targets: dict[str, str] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)


def retry_topics(node: NodeSpec) -> list[str]:
    """The retry tier topics of a node, ``<input>.retry.<n>`` for n = 1..tiers."""
    if node.errors is None or node.errors.retry is None:
        return []
    return [f"{node.input}.retry.{n}" for n in range(1, len(node.errors.retry.delays) + 1)]


def dlq_topic(node: NodeSpec) -> str:
    """The dead-letter topic of a node: ``errors.dlq`` or ``<input>.dlq``."""
    if node.errors is not None and node.errors.dlq:
        return node.errors.dlq
    return f"{node.input}.dlq"


def route_label(index: int, route: RouteSpec) -> str:
    """How the ``index``-th (0-based) route of a node is named everywhere: its number from 1
    and its condition, ``2:score >= 0.8``, ``1:always``, ``4:otherwise`` (the metric label)."""
    return f"{index + 1}:{route.when or ('otherwise' if route.otherwise else 'always')}"


def _edge_label(index: int, route: RouteSpec) -> str:
    """``route 2: score >= 0.8``; a route without a condition is just ``route 1``."""
    condition = route.when or ("otherwise" if route.otherwise else "")
    return f"route {index + 1}: {condition}" if condition else f"route {index + 1}"


def build_graph(spec: TopologySpec) -> FlowGraph:
    """Every topic, node and table of ``spec`` with the edges between them (a node with
    `repartition` steps drawn as its parts, with the internal topics between them)."""
    rekeyed = repartition_labels(spec)
    spec = expand(spec)
    graph = FlowGraph(name=spec.topology, topics=dict.fromkeys(spec.topics, True))
    graph.tables = list(spec.tables)

    def topic(name: str) -> str:
        graph.topics.setdefault(name, False)
        return f"topic:{name}"

    for name, table in spec.tables.items():
        if table.topic:
            graph.edges.append(Edge(topic(table.topic), f"table:{name}", "feed"))
    for name, node in spec.nodes.items():
        graph.nodes.append(name)
        vertex = f"node:{name}"
        if node.schedule is not None:  # its input is its internal ticks topic
            graph.edges.append(Edge(topic(node.input), vertex, "input", node.schedule.describe()))
            for scan in node.schedule.scan:
                if scan.table in spec.tables:
                    graph.edges.append(Edge(f"table:{scan.table}", vertex, "lookup", "scan"))
        else:
            graph.edges.append(Edge(topic(node.input), vertex, "input"))
        for step in node.steps:
            if isinstance(step, EnrichStep | LookupManyStep) and step.table in spec.tables:
                graph.edges.append(Edge(f"table:{step.table}", vertex, "lookup", step.step))
            elif isinstance(step, _WRITERS) and step.table in spec.tables:
                graph.edges.append(Edge(vertex, f"table:{step.table}", "write", step.step))
            if isinstance(step, JoinStep):
                graph.edges.append(Edge(topic(step.topic), vertex, "join", f"join {step.kind} on {step.key}"))
                if step.table in spec.tables:
                    graph.edges.append(Edge(vertex, f"table:{step.table}", "write", "join"))
        for index, route in enumerate(node.routes):
            label = _edge_label(index, route)
            for target in route.targets():
                shown = rekeyed.get(target.topic, label)  # a part's route to its internal topic
                graph.edges.append(Edge(vertex, topic(target.topic), "route", shown))
        for external in external_targets(node):
            key = f"{name}/{external.name}"
            graph.targets[key] = f"{external.kind}: {external.name}"
            label = _edge_label(external.route, node.routes[external.route])
            graph.edges.append(Edge(vertex, f"target:{key}", "route", label))
        if node.errors is not None and node.errors.retry is not None:
            for n, (retry, delay) in enumerate(
                zip(retry_topics(node), node.errors.retry.delays, strict=True), start=1
            ):
                graph.edges.append(Edge(vertex, topic(retry), "retry", f"retry {n}"))
                graph.edges.append(Edge(f"topic:{retry}", vertex, "retry", f"after {_duration(delay)}"))
        dlq = dlq_topic(node)
        if node.errors is not None and node.errors.dlq and dlq not in spec.topics:
            graph.named_dlqs.add(dlq)
        graph.edges.append(Edge(vertex, topic(dlq), "dlq", "dlq"))
    return graph


def _suffix(graph: FlowGraph, name: str) -> str:
    if graph.topics[name]:
        return ""
    return " (errors.dlq)" if name in graph.named_dlqs else " (implied)"


def find_cycles(spec: TopologySpec) -> list[list[str]]:
    """Groups of nodes that feed, directly or not, their own input (retry loops excluded)."""
    readers: dict[str, list[str]] = {}
    for name, node in spec.nodes.items():
        readers.setdefault(node.input, []).append(name)
    succ = {
        name: sorted({r for route in node.routes for t in route.targets() for r in readers.get(t.topic, [])})
        for name, node in spec.nodes.items()
    }
    return [c for c in _strongly_connected(succ) if len(c) > 1 or c[0] in succ[c[0]]]


def _strongly_connected(succ: dict[str, list[str]]) -> list[list[str]]:
    """Tarjan's algorithm; components in a stable order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in succ[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            out.append(sorted(component))

    for v in succ:
        if v not in index:
            visit(v)
    return out


def _duration(ms: int) -> str:
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


# --------------------------------------------------------------------------- Mermaid


def _mermaid_text(text: str) -> str:
    """Text inside a quoted Mermaid label: quotes and angle brackets as entity codes."""
    return (
        text.replace("&", "#amp;")
        .replace('"', "#quot;")
        .replace("<", "#lt;")
        .replace(">", "#gt;")
        .replace("\n", " ")
    )


def to_mermaid(graph: FlowGraph) -> str:
    """A Mermaid ``flowchart``: topics as cylinders, nodes rounded, tables as subroutines."""
    ids = _ids(graph)
    lines = ["flowchart LR"]
    for name in graph.topics:
        lines.append(f'    {ids[f"topic:{name}"]}[("{_mermaid_text(name + _suffix(graph, name))}")]')
    for name in graph.nodes:
        lines.append(f'    {ids[f"node:{name}"]}("{_mermaid_text(name)}")')
    for name in graph.tables:
        lines.append(f'    {ids[f"table:{name}"]}[["table: {_mermaid_text(name)}"]]')
    for key, label in graph.targets.items():
        lines.append(f'    {ids[f"target:{key}"]}>"{_mermaid_text(label)}"]')
    red: list[int] = []
    for i, edge in enumerate(graph.edges):
        arrow = "-.->" if edge.kind in ("retry", "dlq", "lookup", "feed", "write") else "-->"
        label = f'|"{_mermaid_text(edge.label)}"|' if edge.label else ""
        lines.append(f"    {ids[edge.src]} {arrow}{label} {ids[edge.dst]}")
        if edge.kind in ("retry", "dlq"):
            red.append(i)
    lines.append("    classDef topic fill:#fff7e6,stroke:#b7791f")
    lines.append("    classDef node fill:#e8f0fe,stroke:#1a56db")
    lines.append("    classDef table fill:#eef7ee,stroke:#2f855a")
    lines.append("    classDef target fill:#f3e8ff,stroke:#6b46c1")
    for kind in ("topic", "node", "table", "target"):
        members = [v for k, v in ids.items() if k.startswith(f"{kind}:")]
        if members:
            lines.append(f"    class {','.join(members)} {kind}")
    if red:
        lines.append(f"    linkStyle {','.join(map(str, red))} stroke:#dd3333,color:#dd3333")
    return "\n".join(lines) + "\n"


def _ids(graph: FlowGraph) -> dict[str, str]:
    """Short identifiers (t0, n0, s0) so any topic name is safe in the drawing languages."""
    ids: dict[str, str] = {}
    for i, name in enumerate(graph.topics):
        ids[f"topic:{name}"] = f"t{i}"
    for i, name in enumerate(graph.nodes):
        ids[f"node:{name}"] = f"n{i}"
    for i, name in enumerate(graph.tables):
        ids[f"table:{name}"] = f"s{i}"
    for i, key in enumerate(graph.targets):
        ids[f"target:{key}"] = f"x{i}"
    return ids


# --------------------------------------------------------------------------- Graphviz DOT


def _dot_string(text: str) -> str:
    """A DOT double-quoted string (backslashes and quotes escaped, newlines kept as \\n)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _attrs(**attrs: str) -> str:
    return "[" + ", ".join(f"{k}={_dot_string(v)}" for k, v in attrs.items()) + "]"


def to_dot(graph: FlowGraph) -> str:
    """A Graphviz ``digraph`` accepted by ``dot -Tsvg``."""
    ids = _ids(graph)
    lines = [
        f"digraph {_dot_string(graph.name)} {{",
        "    rankdir=LR;",
        '    node [fontname="Helvetica", fontsize=11];',
        '    edge [fontname="Helvetica", fontsize=9];',
    ]
    for name, declared in graph.topics.items():
        attrs = _attrs(
            label=name + _suffix(graph, name),
            shape="cylinder",
            style="filled" if declared or name in graph.named_dlqs else "filled,dashed",
            fillcolor="#fff7e6" if declared else "#fdecea",
        )
        lines.append(f"    {ids[f'topic:{name}']} {attrs};")
    for name in graph.nodes:
        attrs = _attrs(label=name, shape="box", style="rounded,filled", fillcolor="#e8f0fe")
        lines.append(f"    {ids[f'node:{name}']} {attrs};")
    for name in graph.tables:
        attrs = _attrs(label=f"table: {name}", shape="component", style="filled", fillcolor="#eef7ee")
        lines.append(f"    {ids[f'table:{name}']} {attrs};")
    for key, label in graph.targets.items():
        attrs = _attrs(label=label, shape="cds", style="filled", fillcolor="#f3e8ff")
        lines.append(f"    {ids[f'target:{key}']} {attrs};")
    for edge in graph.edges:
        attrs = {"label": edge.label} if edge.label else {}
        if edge.kind in ("retry", "dlq"):
            attrs |= {"style": "dashed", "color": "#dd3333", "fontcolor": "#dd3333"}
        elif edge.kind in ("feed", "lookup", "write"):
            attrs |= {"style": "dotted", "color": "#2f855a"}
        suffix = f" {_attrs(**attrs)}" if attrs else ""
        lines.append(f"    {ids[edge.src]} -> {ids[edge.dst]}{suffix};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def topics_of(graph: FlowGraph, kinds: Iterable[EdgeKind]) -> set[str]:
    """Topics at the end of edges of the given kinds (e.g. every implied DLQ)."""
    wanted = set(kinds)
    return {
        e.dst.removeprefix("topic:") for e in graph.edges if e.kind in wanted and e.dst.startswith("topic:")
    }
