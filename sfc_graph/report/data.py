"""The numbers of a comparison report, gathered from the store as plain polars tables.

Every number comes from the named query library (``circuit-overlap``, ``shared-features``, ``layer-profile``,
``top-nodes``, ``error-share``) and from the manifests' stored ``evaluation``. Nothing here needs a plotting
library: :mod:`.figures` draws these tables, :mod:`.summary` and :mod:`.render` write them out.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import polars as pl

from .. import naming
from ..errors import CircuitNotFound, ReportError, SfcError
from ..sites import Site

if TYPE_CHECKING:  # pragma: no cover
    from ..store.base import BaseStore

log = logging.getLogger(__name__)

TOP_K = 10  # top features listed per circuit
MAX_SHARED_ROWS = 25  # shared features listed in the table
MAX_MATRIX_CIRCUITS = 8  # beyond this the shared-features table lists effects, not one column per circuit
# Beyond this many circuits (hundreds come from `sfc discover`) the report summarises instead of listing: circuits
# ordered by clustering their overlap, per-circuit detail for the largest SHOWN_CIRCUITS only, distributions
# instead of one line per circuit.
LARGE_COMPARISON = 24
SHOWN_CIRCUITS = 12


@dataclass
class ComparisonData:
    """Everything a comparison report shows, per circuit where it is per circuit."""

    circuits: pl.DataFrame  # id, task, model, method, n_nodes, n_edges, label
    overlap: pl.DataFrame  # circuit_a, circuit_b, jaccard, weighted_overlap
    shared: pl.DataFrame  # feature, site, layer, count, effects (+ tasks, one column per circuit label)
    n_shared: int  # features in at least two of the circuits
    shared_counts: dict[str, int] = field(default_factory=dict)  # feature -> circuits (of these) containing it
    profiles: dict[str, pl.DataFrame] = field(default_factory=dict)  # circuit id -> site, n_nodes, abs_effect, share
    top: dict[str, pl.DataFrame] = field(default_factory=dict)
    error_share: dict[str, pl.DataFrame] = field(default_factory=dict)  # circuit id -> site, error_share
    evaluation: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    shown: list[str] = field(default_factory=list)  # circuits with per-circuit detail (all, unless large)
    shared_histogram: pl.DataFrame = field(default_factory=pl.DataFrame)  # in circuits, features

    @property
    def ids(self) -> list[str]:
        return self.circuits["id"].to_list()

    @property
    def large(self) -> bool:
        return len(self.ids) > LARGE_COMPARISON

    @property
    def labels(self) -> dict[str, str]:
        return dict(zip(self.circuits["id"], self.circuits["label"]))

    def overall_error_share(self, circuit_id: str) -> float | None:
        frame = self.error_share.get(circuit_id)
        if frame is None or frame.height == 0:
            return None
        row = frame.filter(pl.col("site") == "all")
        return float(row["error_share"][0]) if row.height and row["error_share"][0] is not None else None


def resolve_selectors(store: "BaseStore", selectors: Sequence[str]) -> pl.DataFrame:
    """The store's circuit rows (``circuits()``) that ``selectors`` name, in the order named, each once.

    A selector is a circuit id or a task name (all of that task's circuits); ids win over task names.
    """
    if not selectors:
        raise ReportError("name at least one circuit id or task to compare")
    known = store.circuits()
    chosen: list[str] = []
    for selector in selectors:
        if selector in known["id"]:
            ids = [selector]
        else:
            ids = known.filter(pl.col("task") == selector)["id"].to_list()
        if not ids:
            tasks = sorted(set(known["task"].to_list()))
            hint = f"known tasks: {', '.join(tasks[:8])}{' …' if len(tasks) > 8 else ''}" if tasks else "the store is empty"
            raise CircuitNotFound(f"{selector!r} is neither a circuit id nor a task in the store ({hint})")
        chosen += [i for i in ids if i not in chosen]
    rows = known.filter(pl.col("id").is_in(chosen))
    rows = rows.with_columns(pl.col("id").replace_strict({c: i for i, c in enumerate(chosen)}).alias("_order"))
    rows = rows.sort("_order").drop("_order")
    return rows.with_columns(pl.Series("label", _labels(rows)))


def _labels(rows: pl.DataFrame) -> list[str]:
    """Short names for plots: the task when it names one circuit here, else task plus a short id."""
    tasks = rows["task"].to_list()
    ids = rows["id"].to_list()
    labels = []
    for task, cid in zip(tasks, ids):
        labels.append(task if tasks.count(task) == 1 else f"{task} · {cid[:8]}")
    if len(set(labels)) < len(labels):  # ids sharing a prefix: fall back to whole ids
        labels = [f"{t} · {c}" if tasks.count(t) > 1 else t for t, c in zip(tasks, ids)]
    return labels


def gather(store: "BaseStore", circuits: pl.DataFrame, *, top_k: int) -> ComparisonData:
    ids = circuits["id"].to_list()
    labels = dict(zip(ids, circuits["label"]))
    if len(ids) > 1:
        overlap = store.query("circuit-overlap", circuits=ids)
        shared = store.query("shared-features", circuits=ids, min_count=2)
    else:
        overlap = pl.DataFrame(schema={"circuit_a": pl.String, "circuit_b": pl.String, "jaccard": pl.Float64,
                                       "weighted_overlap": pl.Float64})
        shared = pl.DataFrame(schema={"feature": pl.String, "site": pl.String, "layer": pl.Int64, "count": pl.Int64,
                                      "effects": pl.List(pl.Float64), "circuit_ids": pl.List(pl.String)})
    n_shared = shared.height
    shared_counts = dict(zip(shared["feature"].to_list(), shared["count"].to_list()))
    histogram = shared.group_by("count").agg(pl.len().alias("features")).sort("count").rename(
        {"count": "in circuits"}) if shared.height else pl.DataFrame()
    shared = _rank_shared(shared).head(MAX_SHARED_ROWS)
    shared = with_circuit_columns(shared, ids, labels, dict(zip(ids, circuits["task"])))
    large = len(ids) > LARGE_COMPARISON
    if large:
        circuits = circuits[cluster_order(ids, overlap)]  # similar circuits side by side in every figure
        ids = circuits["id"].to_list()
    shown = largest(store, circuits, SHOWN_CIRCUITS) if large else ids
    data = ComparisonData(circuits=circuits, overlap=overlap, shared=shared, n_shared=n_shared,
                          shared_counts=shared_counts, shown=shown, shared_histogram=histogram)
    for cid in ids:
        data.profiles[cid] = _profile(store.query("layer-profile", circuit=cid))
        data.error_share[cid] = with_site_names(store.query("error-share", circuit=cid))
        data.evaluation[cid] = _evaluation(store, cid)
    for cid in shown:
        data.top[cid] = _top_units(store, cid, top_k)
    return data


def cluster_order(ids: list[str], overlap: pl.DataFrame) -> list[int]:
    """Positions of ``ids`` reordered so that circuits that overlap sit together: the leaf order of an
    average-linkage clustering on 1 - Jaccard (pairs without a Jaccard count as disjoint).

    >>> pairs = pl.DataFrame({"circuit_a": ["a", "a", "b"], "circuit_b": ["b", "c", "c"], "jaccard": [0.0, 0.9, 0.0]})
    >>> order = cluster_order(["a", "b", "c"], pairs)
    >>> abs(order.index(0) - order.index(2)) == 1  # a and c overlap: neighbours
    True
    """
    import numpy as np
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform

    index = {c: i for i, c in enumerate(ids)}
    distance = np.ones((len(ids), len(ids)))
    np.fill_diagonal(distance, 0.0)
    for a, b, jaccard in overlap.select("circuit_a", "circuit_b", "jaccard").iter_rows():
        if a in index and b in index and jaccard is not None:
            distance[index[a], index[b]] = distance[index[b], index[a]] = 1.0 - jaccard
    return [int(i) for i in leaves_list(linkage(squareform(distance, checks=False), method="average"))]


def largest(store: "BaseStore", circuits: pl.DataFrame, n: int) -> list[str]:
    """The ``n`` largest circuits: discovered behaviours by their number of contexts, others by node count."""
    sizes = dict(zip(circuits["id"], circuits["n_nodes"]))
    try:
        behaviours = store.query("behaviours")
        sizes.update({c: s for c, s in zip(behaviours["circuit"], behaviours["size"]) if c in sizes})
    except SfcError:  # a store without the behaviours query's labels
        pass
    return sorted(sizes, key=lambda c: (-(sizes[c] or 0), c))[:n]


def _top_units(store: "BaseStore", circuit: str, top_k: int) -> pl.DataFrame:
    """The circuit's ``top_k`` nodes by |effect| among its model units — features, and heads or tokens in circuits
    that have them — leaving out error and output nodes (one top-nodes query per kind)."""
    from sfc_graph.bundle import NODE_KINDS

    kinds = [kind for kind in NODE_KINDS if kind not in ("error", "output")]
    frames = [store.query("top-nodes", circuit=circuit, k=top_k, kind=kind) for kind in kinds]
    top = pl.concat(frames, how="vertical_relaxed")
    return top.sort(pl.col("effect").abs(), "node_id", "position", descending=[True, False, False]).head(top_k)


def _rank_shared(shared: pl.DataFrame) -> pl.DataFrame:
    """Most widely shared first, then by total |effect| across the circuits."""
    if shared.height == 0:
        return shared
    total = pl.col("effects").list.eval(pl.element().abs()).list.sum()
    return shared.with_columns(total.alias("_total")).sort(["count", "_total"], descending=True).drop("_total")


def with_circuit_columns(shared: pl.DataFrame, ids: list[str], labels: dict[str, str],
                         tasks: dict[str, str]) -> pl.DataFrame:
    """Add ``tasks`` (how many distinct tasks use the feature) and, for a few circuits, one effect column each,
    from the ``circuit_ids`` that ``shared-features`` lists in step with ``effects``.

    >>> shared = pl.DataFrame({"feature": ["d/1"], "effects": [[0.5, -0.25]], "circuit_ids": [["b", "a"]]})
    >>> with_circuit_columns(shared, ["a", "b"], {"a": "A", "b": "B"}, {"a": "t1", "b": "t1"}).row(0)
    ('d/1', [0.5, -0.25], ['b', 'a'], 1, -0.25, 0.5)
    """
    if shared.height == 0:
        return shared.with_columns(pl.lit(0, dtype=pl.Int64).alias("tasks"))
    per_circuit = [dict(zip(c, e)) for c, e in zip(shared["circuit_ids"].to_list(), shared["effects"].to_list())]
    n_tasks = [len({tasks[c] for c in row if c in tasks}) for row in per_circuit]
    shared = shared.with_columns(pl.Series("tasks", n_tasks, dtype=pl.Int64))
    if len(ids) <= MAX_MATRIX_CIRCUITS:
        shared = shared.with_columns(
            [pl.Series(labels[c], [row.get(c) for row in per_circuit], dtype=pl.Float64) for c in ids]
        )
    return shared


def site_label(site: str | None, layer: int | None) -> str:
    """The site name of a query row's ``site`` and ``layer`` (``all`` and names given whole pass through).

    >>> site_label("mlp", 2), site_label("all", None), site_label(None, None)
    ('mlp_2', 'all', '?')
    """
    if site is None:
        return "?"
    if site in ("embed", "output", "all") or "_" in site or layer is None or layer < 0:
        return site
    return naming.site_name(site, layer)


def site_order(name: str) -> tuple[int, int]:
    """Sort key of a site name in forward order; anything that is not a site name sorts last."""
    try:
        return Site(*naming.parse_site_name(name)).order
    except SfcError:
        return (10**7, 0)


def with_site_names(frame: pl.DataFrame) -> pl.DataFrame:
    names = [site_label(s, l) for s, l in zip(frame["site"], frame["layer"])]
    return frame.with_columns(pl.Series("site_name", names, dtype=pl.String))


def _profile(frame: pl.DataFrame) -> pl.DataFrame:
    """A layer profile in forward order without the output node, with each site's share of the |effect|."""
    frame = with_site_names(frame).filter(pl.col("site_name") != "output")
    frame = frame.group_by("site_name").agg(pl.col("n_nodes").sum(), pl.col("abs_effect").sum())
    total = float(frame["abs_effect"].sum() or 0.0)
    frame = frame.with_columns((pl.col("abs_effect") / total if total else pl.lit(0.0)).alias("share"))
    order = sorted(frame["site_name"].to_list(), key=site_order)
    return frame.with_columns(pl.col("site_name").replace_strict({s: i for i, s in enumerate(order)}).alias("_o")) \
        .sort("_o").drop("_o")


def _evaluation(store: "BaseStore", circuit_id: str) -> list[dict[str, Any]]:
    manifest = store.manifest(circuit_id)
    points = [p for p in manifest.get("evaluation") or [] if isinstance(p, dict)]
    return sorted(points, key=lambda p: (p.get("n_nodes") is None, p.get("n_nodes") or 0,
                                         -(p.get("node_threshold") or 0)))
