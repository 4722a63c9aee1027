"""Layered circuit diagrams with Graphviz, in the style of the Sparse Feature Circuits paper's figures.

One row per site (``rank=same``), in forward order from the bottom (``embed``) to the top (``output``).
Features (and other nodes such as heads) are rounded boxes labelled with their node id and effect; SAE error nodes are dashed
triangles; the output is a double octagon. Node fill is blue for a positive effect and red for a negative
one, deeper for a larger |effect|; edges are blue (+) or red (−), as wide as their |weight| allows.
Big circuits are cut to the ``max_nodes`` nodes of largest |effect| (and the ``max_edges`` strongest
edges among them); the diagram's title says so when that happens.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import networkx as nx

from ..errors import DiagramError, GraphvizMissing
from ..sites import Site

if TYPE_CHECKING:  # pragma: no cover
    from ..store.base import BaseStore

log = logging.getLogger(__name__)

DIAGRAM_FORMATS = {".svg": "svg", ".png": "png"}
MAX_NODES = 60
MAX_EDGES = 200
# Hard bounds: past these a layered layout is unreadable and Graphviz's time grows steeply (3,000 nodes and
# 30,000 edges ran for minutes). Large circuits belong in `sfc export` (GraphML for Gephi).
NODE_LIMIT = 500
EDGE_LIMIT = 5_000
DOT_TIMEOUT_S = 60.0
POSITIVE = (0x21, 0x66, 0xAC)  # RdBu's ends: blue for +, red for −
NEGATIVE = (0xB2, 0x18, 0x2B)
ROW_PREFIX = "__row__"
GRAPHVIZ_MISSING = ("drawing a circuit needs Graphviz's `dot` program, which is not installed: install it with "
                    "`apt-get install graphviz` (Debian/Ubuntu), `brew install graphviz` (macOS) or "
                    "`conda install graphviz`")


@dataclass(frozen=True)
class Diagram:
    """What :func:`draw_graph` wrote."""

    path: Path
    n_nodes: int  # nodes drawn (the output included)
    n_edges: int
    total_nodes: int  # nodes that passed the thresholds
    total_edges: int
    note: str | None  # set when the node or edge cap cut the diagram

    @property
    def capped(self) -> bool:
        return self.note is not None


def render_circuit_diagram(
    store: "BaseStore",
    circuit_id: str,
    out_path: str | Path,
    *,
    node_threshold: float = 0.0,
    edge_threshold: float = 0.0,
    max_nodes: int = MAX_NODES,
    max_edges: int = MAX_EDGES,
) -> Path:
    """Draw circuit ``circuit_id`` to ``out_path`` (``.svg`` or ``.png``) and return the path."""
    return draw_circuit(store, circuit_id, out_path, node_threshold=node_threshold, edge_threshold=edge_threshold,
                        max_nodes=max_nodes, max_edges=max_edges).path


def draw_circuit(
    store: "BaseStore",
    circuit_id: str,
    out_path: str | Path,
    *,
    node_threshold: float = 0.0,
    edge_threshold: float = 0.0,
    max_nodes: int = MAX_NODES,
    max_edges: int = MAX_EDGES,
) -> Diagram:
    """:func:`render_circuit_diagram`, returning what was drawn (and whether a cap cut it)."""
    diagram_format(out_path)  # fail on a bad extension or a missing Graphviz before reading the circuit
    require_graphviz()
    graph = store.to_networkx(circuit_id, node_threshold=node_threshold, edge_threshold=edge_threshold)
    add_feature_labels(store, graph)
    return draw_graph(graph, out_path, max_nodes=max_nodes, max_edges=max_edges)


def add_feature_labels(store: "BaseStore", graph: nx.DiGraph) -> None:
    """Put each feature's label (or, without one, its top activating tokens) on its node as ``label``."""
    from ..features import labels_for

    known = labels_for(store, (d.get("feature") for _, d in graph.nodes(data=True)))
    for _, data in graph.nodes(data=True):
        found = known.get(data.get("feature") or "")
        if found:
            tokens = found.get("top_tokens") or []
            data["label"] = found.get("label") or " ".join(tokens[:3]) or None


def draw_graph(graph: nx.DiGraph, out_path: str | Path, *, max_nodes: int = MAX_NODES,
               max_edges: int = MAX_EDGES) -> Diagram:
    """Draw a circuit graph from :mod:`sfc_graph.export` (a whole circuit or a subgraph of one)."""
    fmt = diagram_format(out_path)
    if max_nodes < 1 or max_edges < 0:
        raise DiagramError("a diagram needs max_nodes >= 1 and max_edges >= 0")
    if max_nodes > NODE_LIMIT or max_edges > EDGE_LIMIT:
        raise DiagramError(f"a diagram draws at most {NODE_LIMIT} nodes and {EDGE_LIMIT:,} edges (asked: {max_nodes} and "
                           f"{max_edges:,}); larger layouts are unreadable and take Graphviz minutes — export the "
                           "circuit instead (sfc export --format graphml, for Gephi)")
    require_graphviz()
    shown = _pick_nodes(graph, max_nodes)
    edges = sorted(((u, v, d["weight"]) for u, v, d in graph.edges(data=True) if u in shown and v in shown),
                   key=lambda e: -abs(e[2]))
    total_edges_between = len(edges)
    edges = edges[:max_edges]
    notes = []
    if len(shown) < graph.number_of_nodes():
        notes.append(f"showing the {len(shown) - _has_output(graph, shown)} nodes of largest |effect| of "
                     f"{graph.number_of_nodes() - _has_output(graph, graph.nodes)} (raise --max-nodes to draw more)")
    if len(edges) < total_edges_between:
        notes.append(f"showing the {len(edges)} strongest of {total_edges_between} edges (raise --max-edges)")
    note = "; ".join(notes) or None
    if note:
        log.info("diagram of %s: %s", graph.graph.get("circuit_id", "?"), note)

    dot = _build_dot(graph, shown, edges, note)
    if fmt == "png":
        dot.graph_attr["dpi"] = "110"  # Graphviz's 96 makes labels blurry; SVG scales by itself
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(_pipe(dot, fmt))
    log.info("wrote %s (%d nodes, %d edges)", out, len(shown), len(edges))
    return Diagram(out, len(shown), len(edges), graph.number_of_nodes(), graph.number_of_edges(), note)


def graphviz_available() -> bool:
    return shutil.which("dot") is not None


def require_graphviz() -> None:
    if not graphviz_available():
        raise GraphvizMissing(GRAPHVIZ_MISSING)


# --- building the dot source -------------------------------------------------------------------------
def _build_dot(graph: nx.DiGraph, shown: list[str], edges: list[tuple[str, str, float]], note: str | None):
    import graphviz

    dot = graphviz.Digraph("circuit", graph_attr={
        "rankdir": "BT", "newrank": "true", "nodesep": "0.12", "ranksep": "0.45", "splines": "spline",
        "fontname": "Helvetica", "fontsize": "12", "labelloc": "t", "labeljust": "l",
        "label": _title(graph, len(shown), len(edges), note), "bgcolor": "white", "pad": "0.2",
    }, node_attr={"fontname": "Helvetica", "fontsize": "10", "margin": "0.06,0.03", "height": "0.3"},
        edge_attr={"arrowsize": "0.5"})

    max_effect = max((abs(graph.nodes[n]["effect"]) for n in shown if graph.nodes[n]["kind"] != "output"),
                     default=1.0) or 1.0
    max_weight = max((abs(w) for *_, w in edges), default=1.0) or 1.0
    rows: dict[Site, list[str]] = {}
    for key in shown:
        rows.setdefault(_site_of(graph.nodes[key]), []).append(key)
    ordered_rows = sorted(rows, key=lambda s: s.order)
    for site in ordered_rows:
        members = sorted(rows[site], key=lambda k: (graph.nodes[k]["position"], graph.nodes[k]["kind"] != "feature",
                                                     graph.nodes[k]["index"] or 0))
        with dot.subgraph(name=f"row_{site.name}") as row:
            row.attr(rank="same")
            row.node(ROW_PREFIX + site.name, site.name, shape="plaintext", fontsize="11", fontcolor="#555555",
                     width="0.8")
            for key in members:
                row.node(key, **_node_style(graph, key, max_effect))
    # An invisible spine through the row labels keeps rows in forward order even where no edge links two rows.
    for lower, upper in zip(ordered_rows, ordered_rows[1:]):
        dot.edge(ROW_PREFIX + lower.name, ROW_PREFIX + upper.name, style="invis", weight="10")
    # Draw weak edges first so that strong ones end up on top.
    for u, v, weight in reversed(edges):
        dot.edge(u, v, **_edge_style(weight, max_weight))
    return dot


def _node_style(graph: nx.DiGraph, key: str, max_effect: float) -> dict[str, str]:
    data = graph.nodes[key]
    effect = data["effect"]
    where = f" @{data['position']}" if graph.graph.get("positional") else ""
    tooltip = f"{data['node_id']}{where}  effect {effect:+.4g}" + (f"  ({data['feature']})" if data.get("feature") else "")
    if data["kind"] == "output":
        return {"label": f"output{where}", "shape": "doubleoctagon", "style": "filled", "fillcolor": "#fde68a",
                "color": "#92400e", "tooltip": tooltip}
    strength = min(1.0, abs(effect) / max_effect)
    fill = _shade(POSITIVE if effect >= 0 else NEGATIVE, 0.12 + 0.88 * strength)
    font = "white" if strength > 0.55 else "black"
    if data["kind"] == "error":
        return {"label": f"ε {_site_of(data).name}{where}\n{effect:+.3g}", "shape": "triangle", "style": "filled,dashed",
                "fillcolor": fill, "fontcolor": font, "color": "#333333", "fontsize": "8", "margin": "0",
                "tooltip": tooltip}
    # The node id names any kind the same way the store and queries do (resid_0/17, attn_2/h3 for a head);
    # a feature's label (sfc label / sfc features build), when it has one, goes under it.
    label = data.get("label")
    named = f"\n{_short(label)}" if label else ""
    return {"label": f"{data['node_id']}{where}{named}\n{effect:+.3g}", "shape": "box",
            "style": "rounded,filled", "fillcolor": fill, "fontcolor": font, "color": "#444444", "tooltip": tooltip}


def _short(label: str, width: int = 28) -> str:
    label = " ".join(str(label).split())
    return label if len(label) <= width else label[: width - 1] + "…"


def _edge_style(weight: float, max_weight: float) -> dict[str, str]:
    strength = min(1.0, abs(weight) / max_weight)
    rgb = POSITIVE if weight >= 0 else NEGATIVE
    alpha = int(round(255 * (0.25 + 0.75 * strength)))
    return {"color": "#%02x%02x%02x%02x" % (*rgb, alpha), "penwidth": f"{0.4 + 4.6 * strength:.2f}",
            "tooltip": f"{weight:+.4g}"}


def _title(graph: nx.DiGraph, n_nodes: int, n_edges: int, note: str | None) -> str:
    g = graph.graph
    lines = [f"circuit {g.get('circuit_id', '?')} · task {g.get('task') or '?'} · {g.get('model') or '?'} · "
             f"{g.get('method') or '?'}",
             f"{n_nodes} nodes, {n_edges} edges (node threshold {g.get('node_threshold', 0):g}, "
             f"edge threshold {g.get('edge_threshold', 0):g}); blue +, red −; boxes: features, "
             "dashed triangles: SAE errors; edge width ∝ |weight|"]
    if note:
        lines.append(note)
    return "\\l".join(lines) + "\\l"


# --- helpers -----------------------------------------------------------------------------------------
def _pick_nodes(graph: nx.DiGraph, max_nodes: int) -> list[str]:
    """The output node plus the ``max_nodes`` other nodes of largest |effect|."""
    outputs = [n for n, d in graph.nodes(data=True) if d["kind"] == "output"]
    others = sorted((n for n, d in graph.nodes(data=True) if d["kind"] != "output"),
                    key=lambda n: -abs(graph.nodes[n]["effect"]))
    return outputs + others[:max_nodes]


def _has_output(graph: nx.DiGraph, nodes) -> int:
    return sum(1 for n in nodes if graph.nodes[n]["kind"] == "output")


def _site_of(data: dict) -> Site:
    return Site(data["site"], int(data["layer"]))


def _shade(rgb: tuple[int, int, int], strength: float) -> str:
    mixed = [round(255 + (c - 255) * strength) for c in rgb]
    return "#%02x%02x%02x" % tuple(mixed)


def diagram_format(out_path: str | Path) -> str:
    suffix = Path(out_path).suffix.lower()
    if suffix not in DIAGRAM_FORMATS:
        raise DiagramError(f"cannot draw to {str(out_path)!r}: give a file name ending in .svg or .png")
    return DIAGRAM_FORMATS[suffix]


def _pipe(dot, fmt: str, *, timeout_s: float = DOT_TIMEOUT_S) -> bytes:
    """Run ``dot`` on the diagram's source, with a time limit (graphviz.pipe has none)."""
    import subprocess

    require_graphviz()
    try:
        done = subprocess.run([shutil.which("dot") or "dot", f"-T{fmt}"], input=dot.source.encode("utf-8"),
                              capture_output=True, timeout=timeout_s, check=False)
    except FileNotFoundError:  # pragma: no cover - raced with the check above
        raise GraphvizMissing("Graphviz's `dot` program could not be run; install Graphviz and try again") from None
    except subprocess.TimeoutExpired:
        raise DiagramError(f"Graphviz did not finish the layout within {timeout_s:.0f} s; draw fewer nodes "
                           "(--max-nodes, --node-threshold) or export the circuit instead (sfc export)") from None
    if done.returncode != 0:
        detail = done.stderr.decode(errors="replace").strip().splitlines()
        raise DiagramError(f"Graphviz failed to draw the circuit ({detail[0] if detail else done.returncode})")
    return done.stdout
