"""Python steps that turn a query's Cypher rows into its result (the ``post:`` line of a query header).

Each step gets the Cypher result, the checked parameters as the user gave them (defaults filled in) and
the values the Cypher was run with (``node`` parameters resolved to CircuitNode uids). Steps stay small
and work on a bounded candidate set: one circuit's edges, or the node sets of the circuits asked about.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Any, Callable

import polars as pl

from . import node_label

PostStep = Callable[[pl.DataFrame, dict[str, Any], dict[str, Any]], pl.DataFrame]

PATH_SCHEMA = {"path": pl.List(pl.String), "weight": pl.Float64}


def upstream_paths(frame: pl.DataFrame, params: dict[str, Any], resolved: dict[str, Any]) -> pl.DataFrame:
    return _ranked_paths(frame, resolved["target"], params, upstream=True)


def downstream_paths(frame: pl.DataFrame, params: dict[str, Any], resolved: dict[str, Any]) -> pl.DataFrame:
    return _ranked_paths(frame, resolved["source"], params, upstream=False)


def _ranked_paths(frame: pl.DataFrame, anchors: list[str], params: dict[str, Any], *, upstream: bool) -> pl.DataFrame:
    """The k simple paths of 1..max_hops edges ending (upstream) or starting (downstream) at ``anchors``,
    with the largest |product of weights|; ties broken by fewer hops, then by the labels."""
    if frame.height == 0:
        return pl.DataFrame(schema=PATH_SCHEMA)
    labels: dict[str, str] = {}
    for uid, node, pos in itertools.chain(
        frame.select("src", "src_node", "src_position").iter_rows(),
        frame.select("dst", "dst_node", "dst_position").iter_rows(),
    ):
        labels[uid] = node_label(node, pos)
    # Walk against the direction of the paths' growth: upstream paths grow at their source end.
    near, far = ("dst", "src") if upstream else ("src", "dst")
    step: dict[str, list[tuple[str, float]]] = {}
    for a, b, w in frame.select(near, far, "weight").iter_rows():
        step.setdefault(a, []).append((b, w))
    paths = best_paths(step, anchors, labels, max_hops=params["max_hops"], k=params["k"], reverse=upstream)
    return pl.DataFrame({"path": [p for p, _ in paths], "weight": [w for _, w in paths]}, schema=PATH_SCHEMA)


def best_paths(
    step: dict[str, list[tuple[str, float]]],
    anchors: list[str],
    labels: dict[str, str],
    *,
    max_hops: int,
    k: int,
    reverse: bool,
) -> list[tuple[list[str], float]]:
    """Best-first search for the k best paths grown from ``anchors`` through ``step`` (node -> [(next, w)]).

    A partial path's key is an upper bound on |weight| of anything it can still become: |product so far|
    times ``bound(node, hops left)``, the best |product| of at most that many further steps (1 for
    stopping; cycles allowed in the bound, so it never underestimates). Partial paths pop before complete
    ones of the same key, so complete paths come out in exact rank order. ``reverse``: paths are grown at
    their source end (upstream), so the labels are read back to front.
    """
    cache: dict[tuple[str, int], float] = {}

    def bound(node: str, hops: int) -> float:
        if hops == 0:
            return 1.0
        key = (node, hops)
        if key not in cache:
            best = 1.0
            for nxt, w in step.get(node, ()):
                best = max(best, abs(w) * bound(nxt, hops - 1))
            cache[key] = best
        return cache[key]

    def ordered(nodes: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(labels[n] for n in (reversed(nodes) if reverse else nodes))

    counter = itertools.count()
    heap: list[tuple] = []
    for anchor in sorted(set(anchors)):
        if anchor in step:
            heap.append((-bound(anchor, max_hops), 0, 0, (), next(counter), (anchor,), 1.0))
    heapq.heapify(heap)
    found: list[tuple[list[str], float]] = []
    while heap and len(found) < k:
        _, is_complete, hops, _, _, nodes, product = heapq.heappop(heap)
        if is_complete:
            found.append((list(ordered(nodes)), product))
            continue
        if hops >= 1:
            heapq.heappush(heap, (-abs(product), 1, hops, ordered(nodes), next(counter), nodes, product))
        if hops == max_hops:
            continue
        tip = nodes[-1]
        for nxt, w in step.get(tip, ()):
            if nxt in nodes:
                continue  # simple paths only
            grown = product * w
            key = -abs(grown) * bound(nxt, max_hops - hops - 1)
            heapq.heappush(heap, (key, 0, hops + 1, (), next(counter), nodes + (nxt,), grown))
    return found


def pairwise_overlap(frame: pl.DataFrame, params: dict[str, Any], resolved: dict[str, Any]) -> pl.DataFrame:
    """Jaccard of node-identity sets and Σ min(|e_a|,|e_b|) / Σ max(|e_a|,|e_b|) for every pair."""
    circuits = params["circuits"]
    if len(circuits) < 2:
        from ..errors import QueryError

        raise QueryError("circuit-overlap needs at least two different circuits")
    effects: dict[str, dict[str, float]] = {c: {} for c in circuits}
    for circuit, node, effect in frame.select("circuit", "node", "effect").iter_rows():
        effects[circuit][node] = abs(effect)
    rows = []
    for a, b in itertools.combinations(circuits, 2):
        ea, eb = effects[a], effects[b]
        union = ea.keys() | eb.keys()
        shared = ea.keys() & eb.keys()
        low = sum(min(ea.get(n, 0.0), eb.get(n, 0.0)) for n in shared)
        high = sum(max(ea.get(n, 0.0), eb.get(n, 0.0)) for n in union)
        rows.append({
            "circuit_a": a,
            "circuit_b": b,
            "jaccard": len(shared) / len(union) if union else None,
            "weighted_overlap": low / high if high > 0 else None,
        })
    return pl.DataFrame(
        rows, schema={"circuit_a": pl.String, "circuit_b": pl.String, "jaccard": pl.Float64,
                      "weighted_overlap": pl.Float64},
    )


def order_effects(frame: pl.DataFrame, params: dict[str, Any], resolved: dict[str, Any]) -> pl.DataFrame:
    """Put each feature's effects in the order the circuits (or tasks) were given; rank the features."""
    if frame.height == 0:
        return frame
    if params.get("circuits"):
        rank = {c: (i, "") for i, c in enumerate(params["circuits"])}
        key = lambda cid, task: rank[cid]  # noqa: E731
    else:
        task_rank = {t: i for i, t in enumerate(params["tasks"])}
        key = lambda cid, task: (task_rank[task], cid)  # noqa: E731
    effects = []
    for ids, tasks, values in frame.select("circuit_ids", "circuit_tasks", "effects").iter_rows():
        order = sorted(range(len(ids)), key=lambda i: key(ids[i], tasks[i]))
        effects.append([values[i] for i in order])
    out = frame.with_columns(pl.Series("effects", effects, dtype=pl.List(pl.Float64)))
    return out.with_columns(
        pl.col("effects").list.eval(pl.element().abs()).list.max().alias("_top")
    ).sort(["count", "_top", "feature"], descending=[True, True, False])


POST_STEPS: dict[str, PostStep] = {
    "upstream_paths": upstream_paths,
    "downstream_paths": downstream_paths,
    "pairwise_overlap": pairwise_overlap,
    "order_effects": order_effects,
}

__all__ = ["POST_STEPS", "best_paths"]
