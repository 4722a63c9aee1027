"""Circuits and query results as NetworkX graphs, and those graphs as files (GraphML, GEXF, JSON, pickle).

Node keys. A circuit aggregated over positions (every node at position −1, the default ``sum``
aggregation) is keyed by its bundle node ids — ``"resid_0/17"``, ``"attn_1/err"``, ``"output"`` — so
``graph.nodes["resid_0/17"]`` reads the way the store and the queries name nodes. A circuit that keeps
positions is keyed ``"<node_id>@<position>"`` for every node at a kept position (>= 0), because the same
node id then occurs once per position; a node at position −1 (the output) keeps its plain id. That is the
one rule of :func:`sfc_graph.naming.node_key`, the same names the queries give node instances. The graph
attribute ``positional`` says whether a graph keeps positions.

Node attributes: ``node_id``, ``kind``, ``site``, ``layer``, ``index`` (None for error and output nodes),
``position``, ``effect``, ``feature`` (the global feature identity ``<dictionary id>/<index>``, the
same string in every circuit over that dictionary, or ``""`` for error and output nodes) and
``identity`` (the id of the node shared across circuits: the feature identity, ``<dictionary id>/err``
for an error node, ``<model>/output`` for the output — what cross-circuit queries such as
``circuit-diff`` call a node). Edges carry ``weight``. Graph attributes: ``circuit_id`` (also ``name``), ``task``, ``model``, ``method``,
``metric``, ``aggregation``, ``positional``, ``node_threshold``, ``edge_threshold``.

>>> import networkx as nx
>>> g = nx.DiGraph(positional=False)
>>> node_key(g, "resid_0/17", -1)
'resid_0/17'
>>> node_key(nx.DiGraph(positional=True), "resid_0/17", 3)
'resid_0/17@3'
"""

from __future__ import annotations

import json
import logging
import os
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import networkx as nx
import polars as pl

from . import naming
from .bundle import Bundle
from .errors import ExportError

if TYPE_CHECKING:  # pragma: no cover
    from .store.base import BaseStore

log = logging.getLogger(__name__)

FORMATS = ("graphml", "gexf", "json", "gpickle")
EXTENSIONS = {".graphml": "graphml", ".gexf": "gexf", ".json": "json", ".gpickle": "gpickle", ".pickle": "gpickle",
              ".pkl": "gpickle"}
GRAPH_ATTRIBUTES = ("task", "model", "method", "metric", "aggregation")
# Columns of a query result that name nodes of one circuit, and how.
NODE_COLUMNS = ("node_id", "node", "other", "source", "target")
EDGE_COLUMN_PAIRS = (("src", "dst"), ("source", "target"))


def node_key(graph: nx.DiGraph, node_id: str, position: int) -> str:
    """The key of bundle node ``(node_id, position)`` in ``graph`` (see the module docstring)."""
    return naming.node_key(node_id, position)


def circuit_to_networkx(
    store: "BaseStore", circuit_id: str, *, node_threshold: float = 0.0, edge_threshold: float = 0.0
) -> nx.DiGraph:
    """Circuit ``circuit_id`` of ``store`` as a :class:`networkx.DiGraph`.

    Keeps nodes with ``|effect| >= node_threshold`` (the output node always) and edges with
    ``|weight| >= edge_threshold`` whose two ends are both kept. Nodes left without edges stay in.
    """
    return bundle_to_networkx(store.read_circuit(circuit_id), node_threshold=node_threshold,
                              edge_threshold=edge_threshold)


def bundle_to_networkx(bundle: Bundle, *, node_threshold: float = 0.0, edge_threshold: float = 0.0) -> nx.DiGraph:
    """A bundle (read from disk or from the store) as a :class:`networkx.DiGraph`; see :func:`circuit_to_networkx`."""
    if node_threshold < 0 or edge_threshold < 0:
        raise ExportError("thresholds are magnitudes and must be >= 0")
    manifest = bundle.manifest
    nodes = bundle.nodes
    if "feature" not in nodes.columns:
        nodes = nodes.with_columns(bundle.feature_identity().alias("feature"))
    if "identity" not in nodes.columns:  # a bundle from disk; one read from the store has the stored identity
        nodes = nodes.with_columns(bundle.identity().alias("identity"))
    positional = bool(nodes.height) and bool((nodes["position"] != -1).any())
    graph = nx.DiGraph(
        name=manifest["circuit_id"],
        circuit_id=manifest["circuit_id"],
        **{key: str(manifest.get(key) or "") for key in GRAPH_ATTRIBUTES},
        positional=positional,
        node_threshold=float(node_threshold),
        edge_threshold=float(edge_threshold),
    )
    kept = nodes.filter((pl.col("effect").abs() >= node_threshold) | (pl.col("kind") == "output"))
    for row in kept.iter_rows(named=True):
        graph.add_node(
            node_key(graph, row["node_id"], row["position"]),
            node_id=row["node_id"],
            kind=row["kind"],
            site=row["site"],
            layer=int(row["layer"]),
            index=None if row["index"] is None else int(row["index"]),
            position=int(row["position"]),
            effect=float(row["effect"]),
            feature=row["feature"] or "",
            identity=row["identity"],
        )
    edges = bundle.edges.filter(pl.col("weight").abs() >= edge_threshold)
    for src, dst, src_pos, dst_pos, weight in edges.select("src", "dst", "src_position", "dst_position", "weight").iter_rows():
        u, v = node_key(graph, src, src_pos), node_key(graph, dst, dst_pos)
        if u in graph and v in graph:
            graph.add_edge(u, v, weight=float(weight))
    log.debug("circuit %s as a graph: %d of %d nodes, %d of %d edges", manifest["circuit_id"],
              graph.number_of_nodes(), nodes.height, graph.number_of_edges(), bundle.edges.height)
    return graph


def subgraph_from_result(store: "BaseStore", circuit_id: str, frame: pl.DataFrame | Iterable[dict[str, Any]]) -> nx.DiGraph:
    """The part of circuit ``circuit_id`` that a query result names.

    Reads nodes from the columns ``node_id`` (with ``position`` when the result has one), ``node``,
    ``other``, ``source``, ``target`` — bundle node ids, ``node_id@position``, or the shared identities
    that cross-circuit queries return (``circuit-diff``'s ``node``); paths from ``path`` (lists of node
    ids, as ``upstream-paths`` and ``downstream-paths`` return); edges from ``src``/``dst``; and, when
    none of those is there, global feature identities from ``feature`` (``shared-features``). When the result names edges or paths, the subgraph has exactly those edges (and their
    nodes, plus any named nodes); otherwise it is the subgraph the named nodes induce. Names that are
    not in the circuit are skipped with a warning; a result that names none of its nodes is an error.
    """
    return subgraph_of(store.to_networkx(circuit_id), frame)


def subgraph_of(graph: nx.DiGraph, frame: pl.DataFrame | Iterable[dict[str, Any]]) -> nx.DiGraph:
    """:func:`subgraph_from_result` on a graph already built (e.g. with thresholds)."""
    if not isinstance(frame, pl.DataFrame):
        frame = pl.DataFrame(list(frame))
    by_id: dict[str, list[str]] = {}
    by_feature: dict[str, list[str]] = {}
    for key, data in graph.nodes(data=True):
        by_id.setdefault(data["node_id"], []).append(key)
        if data.get("identity") and data["identity"] != data["node_id"]:
            by_id.setdefault(data["identity"], []).append(key)
        if data.get("feature"):
            by_feature.setdefault(data["feature"], []).append(key)

    names: list[tuple[str, int | None]] = []  # (node id, position or None for every position)
    pairs: list[tuple[tuple[str, int | None], tuple[str, int | None]]] = []
    features: list[str] = []
    columns = set(frame.columns)
    has_position = "position" in columns
    for column in NODE_COLUMNS:
        if column in columns and frame.schema[column] == pl.String:
            positions = frame["position"] if column == "node_id" and has_position else [None] * frame.height
            names += [(value, _int(pos)) for value, pos in zip(frame[column], positions) if value is not None]
    for a, b in EDGE_COLUMN_PAIRS:
        if {a, b} <= columns and frame.schema[a] == pl.String:
            pa = frame[f"{a}_position"] if f"{a}_position" in columns else [None] * frame.height
            pb = frame[f"{b}_position"] if f"{b}_position" in columns else [None] * frame.height
            pairs += [((u, _int(x)), (v, _int(y))) for u, v, x, y in zip(frame[a], frame[b], pa, pb)
                      if u is not None and v is not None]
    if "path" in columns:
        for path in frame["path"].to_list():
            path = [p for p in (path or []) if p is not None]
            pairs += [((u, None), (v, None)) for u, v in zip(path, path[1:])]
            names += [(p, None) for p in path]
    if not (names or pairs) and "feature" in columns and frame.schema["feature"] == pl.String:
        features = [f for f in frame["feature"].to_list() if f]
    if not (names or pairs or features):
        raise ExportError(
            "the query result names no nodes: it needs a node_id, node, other, src/dst, path or feature column "
            f"(it has {', '.join(frame.columns) or 'no columns'})"
        )

    def keys_of(name: str, position: int | None) -> list[str]:
        if name not in by_id:  # "resid_0/3@2", as single-circuit queries name positions
            plain, at = naming.parse_node_key(name)
            if at is not None:
                name, position = plain, at
        keys = by_id.get(name, [])
        return keys if position is None else [k for k in keys if graph.nodes[k]["position"] == position]

    missing: set[str] = set()
    nodes: set[str] = set()
    for name, position in names + [end for pair in pairs for end in pair]:
        found = keys_of(name, position)
        nodes.update(found)
        if not found:
            missing.add(name)
    for feature in features:
        found = by_feature.get(feature, [])
        nodes.update(found)
        if not found:
            missing.add(feature)
    if not nodes:
        raise ExportError(
            f"none of the query result's {len(missing)} node(s) is in circuit {graph.graph.get('circuit_id')!r}"
            + (" at these thresholds" if graph.graph.get("node_threshold") else "")
        )
    if missing:
        log.warning("%d node(s) of the query result are not in circuit %s (e.g. %s); skipped", len(missing),
                    graph.graph.get("circuit_id"), sorted(missing)[0])
    if not pairs:
        return graph.subgraph(nodes).copy()
    sub = nx.DiGraph(**graph.graph)
    sub.add_nodes_from((n, graph.nodes[n]) for n in nodes)
    for (u, pu), (v, pv) in pairs:
        for a in keys_of(u, pu):
            for b in keys_of(v, pv):
                if graph.has_edge(a, b):
                    sub.add_edge(a, b, **graph.edges[a, b])
    return sub


def format_for(path: str | os.PathLike[str], fmt: str | None = None) -> str:
    """The export format: ``fmt`` if given, else the one ``path``'s extension names."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise ExportError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
        return fmt
    suffix = Path(path).suffix.lower()
    if suffix not in EXTENSIONS:
        raise ExportError(f"cannot tell the format from {str(path)!r}; give one of {', '.join(FORMATS)}")
    return EXTENSIONS[suffix]


def write_graph(graph: nx.DiGraph, path: str | os.PathLike[str], fmt: str | None = None) -> Path:
    """Write ``graph`` to ``path`` as graphml, gexf, json (NetworkX node-link) or gpickle.

    GraphML and GEXF cannot hold None, so attributes whose value is None (``index`` of error and output
    nodes) are left out of those files; JSON writes them as null and the pickle keeps them.
    Read back with ``nx.read_graphml``, ``nx.read_gexf``, ``nx.node_link_graph(json.load(f), edges="links")``
    or ``pickle.load``.
    """
    fmt = format_for(path, fmt)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "graphml":
        nx.write_graphml(_without_none(graph), out)
    elif fmt == "gexf":
        nx.write_gexf(_without_none(graph), out)
    elif fmt == "json":
        data = nx.node_link_data(graph, edges="links")
        out.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    else:  # networkx 3 removed write_gpickle; the pickle module is what it wrapped
        with open(out, "wb") as handle:
            pickle.dump(graph, handle, protocol=pickle.HIGHEST_PROTOCOL)
    log.info("wrote %s (%s, %d nodes, %d edges)", out, fmt, graph.number_of_nodes(), graph.number_of_edges())
    return out


def _without_none(graph: nx.DiGraph) -> nx.DiGraph:
    clean = nx.DiGraph(**{k: v for k, v in graph.graph.items() if v is not None})
    clean.add_nodes_from((n, {k: v for k, v in d.items() if v is not None}) for n, d in graph.nodes(data=True))
    clean.add_edges_from((u, v, {k: w for k, w in d.items() if w is not None}) for u, v, d in graph.edges(data=True))
    return clean




def _int(value: Any) -> int | None:
    return None if value is None else int(value)


__all__ = ["FORMATS", "ExportError", "bundle_to_networkx", "circuit_to_networkx", "format_for", "node_key",
           "subgraph_from_result", "subgraph_of", "write_graph"]
