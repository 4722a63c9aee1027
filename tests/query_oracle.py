"""Independent answers to the named queries, computed with polars and NetworkX from the bundles' Parquet.

Nothing here reads the store or imports sfc_graph.graph / sfc_graph.queries: identities, sums over
positions and path rankings are re-derived from the bundle contract (docs/bundle.md), so that a test
comparing the two catches a wrong query rather than restating it.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import networkx as nx
import polars as pl

from builders import build_circuit
from sfc_graph.bundle import Bundle, read_bundle, write_bundle


# --- hand-built circuits for the query tests ----------------------------------------------------------

def build_query_bundles(root: Path) -> dict[str, Bundle]:
    """Five circuits: two tasks over one model with overlapping feature pools, a circuit of another model,
    and one that keeps positions (aggregation none: the same nodes at positions 0 and 2, plus edges across
    positions), so that cross-circuit queries must sum over positions."""
    bundles = {
        "agr-1": build_circuit(root / "agr-1", "agr-1", task="agreement", seed=11, feature_pool=range(10)),
        "agr-2": build_circuit(root / "agr-2", "agr-2", task="agreement", seed=12, feature_pool=range(10)),
        "ioi-1": build_circuit(root / "ioi-1", "ioi-1", task="ioi", seed=13, feature_pool=range(10),
                               edge_prob=0.7),
        "other-model": build_circuit(root / "other-model", "other-model", task="ioi", model="toy-b", seed=11,
                                     feature_pool=range(10)),
    }
    first = build_circuit(root / "pos-0", "pos-0", task="agreement", seed=14, feature_pool=range(10), position=0)
    second = build_circuit(root / "pos-2", "pos-2", task="agreement", seed=14, feature_pool=range(10), position=2)
    across = first.edges.head(6).with_columns(pl.lit(2, dtype=pl.Int64).alias("dst_position"), pl.col("weight") * 0.5)
    nodes = pl.concat([first.nodes, second.nodes.with_columns(pl.col("effect") * -0.7)])
    edges = pl.concat([first.edges, second.edges, across])
    manifest = {k: v for k, v in first.manifest.items() if k not in ("files", "created_at", "producer")}
    manifest.update(circuit_id="positions", aggregation="none")
    bundles["positions"] = write_bundle(root / "positions", manifest, nodes, edges)
    return {cid: read_bundle(b.path) for cid, b in bundles.items()}


# --- identities and per-circuit node tables -----------------------------------------------------------

def nodes_with_identity(bundle: Bundle) -> pl.DataFrame:
    """The bundle's nodes with ``identity``: <dictionary id>/<index>, <dictionary id>/err, <model>/output."""
    dict_of_site = {site: entry["id"] for site, entry in bundle.manifest["dictionaries"].items()}
    rows = []
    for row in bundle.nodes.iter_rows(named=True):
        site_name = row["site"] if row["site"] == "embed" else f"{row['site']}_{row['layer']}"  # from the columns
        if row["kind"] == "feature":
            identity = f"{dict_of_site[site_name]}/{row['index']}"
        elif row["kind"] == "error":
            identity = f"{dict_of_site[site_name]}/err"
        else:
            identity = f"{bundle.model}/output"
        rows.append({**row, "identity": identity, "feature": identity if row["kind"] == "feature" else None})
    return pl.DataFrame(rows, schema={**bundle.nodes.schema, "identity": pl.String, "feature": pl.String})


def summed_effects(bundle: Bundle, min_effect: float = 0.0, kind: str | None = None) -> dict[str, float]:
    """identity -> effect summed over positions, keeping |sum| >= min_effect."""
    frame = nodes_with_identity(bundle)
    if kind:
        frame = frame.filter(pl.col("kind") == kind)
    sums = frame.group_by("identity").agg(pl.col("effect").sum())
    return {i: e for i, e in sums.iter_rows() if abs(e) >= min_effect}


def label(node_id: str, position: int) -> str:
    return node_id if position < 0 else f"{node_id}@{position}"


# --- the oracles ----------------------------------------------------------------------------------------

def top_nodes(bundle: Bundle, k: int = 20, kind: str | None = None, min_effect: float = 0.0) -> pl.DataFrame:
    frame = nodes_with_identity(bundle).filter(pl.col("effect").abs() >= min_effect)
    if kind:
        frame = frame.filter(pl.col("kind") == kind)
    frame = frame.with_columns(pl.col("effect").abs().alias("_abs"))
    frame = frame.sort(["_abs", "node_id", "position"], descending=[True, False, False]).head(k)
    # no labels in the oracle's circuits: the label column is all null (tests/test_features.py checks labels)
    return frame.select("node_id", "feature", "kind", "site", "layer", "position", "effect",
                        pl.lit(None, dtype=pl.String).alias("label"),
                        pl.lit(None, dtype=pl.List(pl.String)).alias("top_tokens"))


def feature_circuits(bundles: dict[str, Bundle], feature: str, min_effect: float = 0.0) -> list[tuple]:
    rows = []
    for cid, bundle in bundles.items():
        effects = summed_effects(bundle, min_effect, kind="feature")
        if feature in effects:
            rows.append((cid, bundle.task, effects[feature]))
    return sorted(rows, key=lambda r: (-abs(r[2]), r[0]))


def layer_profile(bundle: Bundle, kind: str | None = None, min_effect: float = 0.0) -> pl.DataFrame:
    frame = bundle.nodes.filter((pl.col("kind") != "output") & (pl.col("effect").abs() >= min_effect))
    if kind:
        frame = frame.filter(pl.col("kind") == kind)
    return (
        frame.group_by("site", "layer")
        .agg(pl.len().cast(pl.Int64).alias("n_nodes"), pl.col("effect").abs().sum().alias("abs_effect"))
        .sort("layer", "site")
    )


def error_share(bundle: Bundle, min_effect: float = 0.0) -> dict[tuple, float | None]:
    frame = bundle.nodes.filter((pl.col("kind") != "output") & (pl.col("effect").abs() >= min_effect))
    out: dict[tuple, float | None] = {}
    for (site, layer), group in frame.group_by("site", "layer"):
        total = group["effect"].abs().sum()
        err = group.filter(pl.col("kind") == "error")["effect"].abs().sum()
        out[(site, layer)] = err / total if total > 0 else None
    total = frame["effect"].abs().sum()
    err = frame.filter(pl.col("kind") == "error")["effect"].abs().sum()
    out[("all", None)] = err / total if total > 0 else None
    return out


def shared_features(bundles: dict[str, Bundle], *, circuits: list[str] | None = None, tasks: list[str] | None = None,
                    min_count: int = 2, min_effect: float = 0.0) -> dict[str, tuple]:
    """feature -> (site, layer, count, effects in the documented order, the circuit of each effect)."""
    if circuits is not None:
        chosen = [(cid, cid) for cid in circuits]
    else:
        chosen = [(cid, b.task) for t in tasks for cid, b in sorted(bundles.items()) if b.task == t]
    per_feature: dict[str, list[tuple[str, str, float]]] = {}
    site_layer = {}
    for cid, group in chosen:
        frame = nodes_with_identity(bundles[cid]).filter(pl.col("kind") == "feature")
        for identity, effect in summed_effects(bundles[cid], min_effect, kind="feature").items():
            per_feature.setdefault(identity, []).append((cid, group, effect))
            row = frame.filter(pl.col("identity") == identity).row(0, named=True)
            site_layer[identity] = (row["site"], row["layer"])
    out = {}
    for identity, entries in per_feature.items():
        count = len({group for _, group, _ in entries})
        if count >= min_count:
            out[identity] = (*site_layer[identity], count, [e for _, _, e in entries], [c for c, _, _ in entries])
    return out


def circuit_overlap(bundles: dict[str, Bundle], circuits: list[str], min_effect: float = 0.0) -> list[tuple]:
    rows = []
    for a, b in itertools.combinations(circuits, 2):
        ea = {n: abs(e) for n, e in summed_effects(bundles[a], min_effect).items()}
        eb = {n: abs(e) for n, e in summed_effects(bundles[b], min_effect).items()}
        union = set(ea) | set(eb)
        jaccard = len(set(ea) & set(eb)) / len(union) if union else None
        low = sum(min(ea.get(n, 0.0), eb.get(n, 0.0)) for n in union)
        high = sum(max(ea.get(n, 0.0), eb.get(n, 0.0)) for n in union)
        rows.append((a, b, jaccard, low / high if high else None))
    return rows


def circuit_diff(bundle_a: Bundle, bundle_b: Bundle, min_effect: float = 0.0) -> dict[str, tuple]:
    ea, eb = summed_effects(bundle_a, min_effect), summed_effects(bundle_b, min_effect)
    out = {}
    for node in set(ea) | set(eb):
        status = "both" if node in ea and node in eb else "only_a" if node in ea else "only_b"
        out[node] = (status, ea.get(node), eb.get(node))
    return out


def neighborhood(bundle: Bundle, node_id: str, position: int | None = None, min_weight: float = 0.0) -> list[tuple]:
    edges = bundle.edges.filter(pl.col("weight").abs() >= min_weight)
    rows = []
    for e in edges.iter_rows(named=True):
        if e["dst"] == node_id and (position is None or e["dst_position"] == position):
            rows.append(("in", label(e["src"], e["src_position"]), e["weight"]))
        if e["src"] == node_id and (position is None or e["src_position"] == position):
            rows.append(("out", label(e["dst"], e["dst_position"]), e["weight"]))
    return sorted(rows, key=lambda r: (r[0], -abs(r[2]), r[1]))


def circuit_graph(bundle: Bundle, min_weight: float = 0.0) -> nx.DiGraph:
    graph = nx.DiGraph()
    for e in bundle.edges.iter_rows(named=True):
        if abs(e["weight"]) >= min_weight:
            graph.add_edge(label(e["src"], e["src_position"]), label(e["dst"], e["dst_position"]), weight=e["weight"])
    return graph


def ranked_paths(bundle: Bundle, anchor: str, *, upstream: bool, max_hops: int = 3, min_weight: float = 0.0,
                 k: int = 10) -> list[tuple[list[str], float]]:
    """Every simple path of 1..max_hops edges into (or out of) the anchor instances, by brute force."""
    graph = circuit_graph(bundle, min_weight)
    anchors = [n for n in graph if n == anchor or n.rsplit("@", 1)[0] == anchor]
    found = []
    for a in anchors:
        for other in graph:
            if other == a:
                continue
            src, dst = (other, a) if upstream else (a, other)
            for path in nx.all_simple_paths(graph, src, dst, cutoff=max_hops):
                weight = math.prod(graph.edges[u, v]["weight"] for u, v in zip(path, path[1:]))
                found.append((path, weight))
    found.sort(key=lambda pw: (-abs(pw[1]), len(pw[0]), tuple(pw[0])))
    return found[:k]
