"""A layered layout of a topology's :class:`~stream_orch.topology.graph.FlowGraph`, drawn as SVG.

Computed once, in Python: Graphviz is not on users' machines. Vertices get a layer by longest
path from the sources (retry edges, which loop back, are ignored for layering), are ordered in
their layer by the mean position of their predecessors (one barycentre pass), and placed on a
grid. Node vertices are links (``<a href>``), so they are keyboard focusable.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from stream_orch.topology.graph import FlowGraph

COL_W, ROW_H, BOX_W, BOX_H, MARGIN = 230, 70, 190, 40, 20


@dataclass(frozen=True, slots=True)
class Placed:
    vertex: str  # "topic:x", "node:y", "table:z", "target:n/t"
    x: int
    y: int


def vertices(graph: FlowGraph) -> list[str]:
    out = [f"topic:{t}" for t in graph.topics]
    out += [f"node:{n}" for n in graph.nodes]
    out += [f"table:{t}" for t in graph.tables]
    out += [f"target:{t}" for t in graph.targets]
    return out


def layers(graph: FlowGraph) -> dict[str, int]:
    """Longest path from a source, retry edges left out (they point back)."""
    order = vertices(graph)
    preds: dict[str, list[str]] = {v: [] for v in order}
    for e in graph.edges:
        if e.kind != "retry" and e.src in preds and e.dst in preds:
            preds[e.dst].append(e.src)
    layer: dict[str, int] = {}
    visiting: set[str] = set()

    def depth(v: str) -> int:
        if v in layer:
            return layer[v]
        if v in visiting:  # a cycle between nodes: cut it here
            return 0
        visiting.add(v)
        layer[v] = max((depth(p) + 1 for p in preds[v]), default=0)
        visiting.discard(v)
        return layer[v]

    for v in order:
        depth(v)
    for e in graph.edges:  # a retry topic sits right after the node that writes it
        if e.kind == "retry" and e.src.startswith("node:") and e.dst in layer:
            layer[e.dst] = layer[e.src] + 1
    return layer


def place(graph: FlowGraph) -> dict[str, Placed]:
    layer = layers(graph)
    columns: dict[int, list[str]] = {}
    for v in vertices(graph):
        columns.setdefault(layer[v], []).append(v)
    row: dict[str, float] = {}
    preds: dict[str, list[str]] = {}
    for e in graph.edges:
        preds.setdefault(e.dst, []).append(e.src)
    for col in sorted(columns):
        members = columns[col]
        if col > 0:  # barycentre of already placed predecessors keeps edges short
            first = {v: i for i, v in enumerate(members)}

            def key(v: str, first: dict[str, int] = first) -> tuple[float, int]:
                ys = [row[p] for p in preds.get(v, []) if p in row]
                return (sum(ys) / len(ys) if ys else float(len(first)), first[v])

            members.sort(key=key)
        for i, v in enumerate(members):
            row[v] = i
    return {v: Placed(v, MARGIN + layer[v] * COL_W, MARGIN + int(row[v]) * ROW_H) for v in vertices(graph)}


def _label(vertex: str) -> str:
    kind, _, name = vertex.partition(":")
    return name if kind != "target" else name.split("/", 1)[1]


def edge_id(index: int) -> str:
    return f"e{index}"


def to_svg(
    graph: FlowGraph, href_of_node: dict[str, str], href_of_topic: dict[str, str] | None = None
) -> str:
    """The graph as inline SVG; ids ``v-<vertex>`` and ``e<i>`` let the page update figures.
    Nodes, and the topics in ``href_of_topic`` (the DLQs), are links."""
    href_of_topic = href_of_topic or {}
    at = place(graph)
    width = MARGIN * 2 + (max((p.x for p in at.values()), default=0) - MARGIN) + BOX_W
    height = MARGIN * 2 + (max((p.y for p in at.values()), default=0) - MARGIN) + BOX_H + 20
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="data flow of {escape(graph.name)}">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" '
        'markerHeight="6" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>',
    ]
    for i, e in enumerate(graph.edges):
        if e.src not in at or e.dst not in at:
            continue
        a, b = at[e.src], at[e.dst]
        x1, y1 = a.x + BOX_W, a.y + BOX_H // 2
        x2, y2 = b.x, b.y + BOX_H // 2
        if b.x <= a.x:  # back edge (retry): from the bottom of one box to the bottom of the other
            x1, y1, x2, y2 = a.x + BOX_W // 2, a.y + BOX_H, b.x + BOX_W // 2, b.y + BOX_H
        mid_x, mid_y = (x1 + x2) // 2, (y1 + y2) // 2
        parts.append(
            f'<g class="edge {e.kind}" id="{edge_id(i)}"><title>{escape(e.label or e.kind)}</title>'
            f'<path d="M{x1},{y1} C{mid_x},{y1} {mid_x},{y2} {x2},{y2}" marker-end="url(#arrow)"/>'
            f'<text class="rate" x="{mid_x}" y="{mid_y - 4}" text-anchor="middle"></text></g>'
        )
    for v, p in at.items():
        kind = v.partition(":")[0]
        label = escape(_label(v))
        box = (
            f'<rect x="{p.x}" y="{p.y}" width="{BOX_W}" height="{BOX_H}" rx="{12 if kind == "node" else 3}"/>'
            f'<text x="{p.x + 8}" y="{p.y + 16}">{label}</text>'
            f'<text class="figure" x="{p.x + 8}" y="{p.y + 32}"></text>'
        )
        if kind == "node":
            name = v.partition(":")[2]
            href = href_of_node.get(name, "#")
            parts.append(
                f'<a href="{escape(href)}" class="vertex node" id="v-{escape(v)}" '
                f'aria-label="node {label}">{box}</a>'
            )
        elif kind == "topic" and (href := href_of_topic.get(v.partition(":")[2])) is not None:
            parts.append(
                f'<a href="{escape(href)}" class="vertex topic dlqlink" id="v-{escape(v)}" '
                f'aria-label="dead letters of {label}">{box}</a>'
            )
        else:
            parts.append(f'<g class="vertex {kind}" id="v-{escape(v)}">{box}</g>')
    parts.append("</svg>")
    return "".join(parts)
