"""Python steps that turn a query's Cypher rows into its result (the ``post:`` line of a query header).

Each step gets the results of the query's statements (a list, one frame per statement), the checked parameters as the user gave them (defaults filled in) and
the values the Cypher was run with (``node`` parameters resolved to CircuitNode uids). Steps stay small
and work on a bounded candidate set: one circuit's edges, or the node sets of the circuits asked about.
"""

from __future__ import annotations

import heapq
import itertools
from typing import TYPE_CHECKING, Any, Callable

import polars as pl

from .. import naming
from ..errors import PathBudgetExceeded, QueryError

if TYPE_CHECKING:  # pragma: no cover
    from polars._typing import PolarsDataType

PostStep = Callable[[list[pl.DataFrame], dict[str, Any], dict[str, Any]], pl.DataFrame]

PATH_SCHEMA: dict[str, PolarsDataType] = {"path": pl.List(pl.String), "weight": pl.Float64}


def _largest_abs(values: pl.Series) -> float:
    largest = values.abs().max()
    return float(largest) if isinstance(largest, (int, float)) else 0.0


# The path search keeps its partial paths in a heap; each holds up to max_hops + 1 node keys (~0.3 kB).
# A budget on how many it may create bounds memory (~150 MB) and time, whatever k, max_hops and the density.
PATH_BUDGET = 500_000


def upstream_paths(frames: list[pl.DataFrame], params: dict[str, Any], resolved: dict[str, Any]) -> pl.DataFrame:
    nodes, edges = frames
    return _ranked_paths(nodes, edges, resolved["target"], params, upstream=True)


def downstream_paths(frames: list[pl.DataFrame], params: dict[str, Any], resolved: dict[str, Any]) -> pl.DataFrame:
    nodes, edges = frames
    return _ranked_paths(nodes, edges, resolved["source"], params, upstream=False)


def _ranked_paths(nodes: pl.DataFrame, edges: pl.DataFrame, anchor_uids: list[str], params: dict[str, Any], *,
                  upstream: bool) -> pl.DataFrame:
    """The k simple paths of 1..max_hops edges ending (upstream) or starting (downstream) at the anchors,
    with the largest |product of weights|; ties broken by fewer hops, then by the labels.

    ``nodes``: the circuit's nodes (key, uid, node_id, position); ``edges``: src, dst (node keys), weight.
    """
    if edges.height == 0:
        return pl.DataFrame(schema=PATH_SCHEMA)
    keys = nodes["key"].to_list()
    labels = dict(zip(keys, map(naming.node_key, nodes["node_id"].to_list(), nodes["position"].to_list())))
    wanted = set(anchor_uids)
    anchors = [key for key, uid in zip(keys, nodes["uid"].to_list()) if uid in wanted]
    # Walk against the direction of the paths' growth: upstream paths grow at their source end.
    near, far = ("dst", "src") if upstream else ("src", "dst")
    grouped = edges.group_by(near).agg(pl.col(far), pl.col("weight"))
    step = dict(zip(grouped[near].to_list(), zip(grouped[far].to_list(), grouped["weight"].to_list())))
    try:
        paths = best_paths(step, anchors, labels, max_hops=params["max_hops"], k=params["k"], reverse=upstream,
                           no_gain=_largest_abs(edges["weight"]) <= 1.0)
    except PathBudgetExceeded as exc:
        raise QueryError(
            f"{'upstream' if upstream else 'downstream'}-paths: the search grew past {exc.budget:,} partial paths "
            f"after finding {exc.found} of the {params['k']} asked for; ask for fewer paths (-p k), fewer hops "
            "(-p max_hops) or only strong edges (-p min_weight)"
        ) from None
    return pl.DataFrame({"path": [p for p, _ in paths], "weight": [w for _, w in paths]}, schema=PATH_SCHEMA)


def best_paths(
    step: dict[Any, tuple[list[Any], list[float]]],
    anchors: list[Any],
    labels: dict[Any, str],
    *,
    max_hops: int,
    k: int,
    reverse: bool,
    no_gain: bool | None = None,
    budget: int | None = None,
) -> list[tuple[list[str], float]]:
    """Best-first search for the k best paths grown from ``anchors`` through ``step`` (node -> (nexts, weights)).

    A partial path's key is an upper bound on |weight| of anything it can still become: |product so far|
    times ``bound(node, hops left)``, the best |product| of at most that many further steps (1 for
    stopping; cycles allowed in the bound, so it never underestimates; simply 1 when no |weight| exceeds
    1, the usual case). Partial paths pop before complete ones of the same key, so complete paths come
    out in exact rank order. ``reverse``: paths are grown at their source end (upstream), so the labels
    are read back to front. More than ``budget`` (default :data:`PATH_BUDGET`) heap entries raise
    :class:`PathBudgetExceeded`: dense circuits with many hops hold astronomically many simple paths.
    """
    budget = PATH_BUDGET if budget is None else budget
    pushed = 0
    cache: dict[tuple[Any, int], float] = {}
    if no_gain is None:
        no_gain = all(abs(w) <= 1.0 for _, weights in step.values() for w in weights)
    nothing: tuple[list, list] = ([], [])

    def bound(node: Any, hops: int) -> float:
        if hops == 0 or no_gain:
            return 1.0
        key = (node, hops)
        if key not in cache:
            best = 1.0
            for nxt, w in zip(*step.get(node, nothing)):
                best = max(best, abs(w) * bound(nxt, hops - 1))
            cache[key] = best
        return cache[key]

    def ordered(nodes: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(labels[n] for n in (reversed(nodes) if reverse else nodes))

    counter = itertools.count()
    heap: list[tuple] = []
    for anchor in sorted(set(anchors), key=lambda a: labels[a]):
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
            pushed += 1
        if hops == max_hops:
            continue
        tip = nodes[-1]
        for nxt, w in zip(*step.get(tip, nothing)):
            if nxt in nodes:
                continue  # simple paths only
            grown = product * w
            key = -abs(grown) * bound(nxt, max_hops - hops - 1)
            heapq.heappush(heap, (key, 0, hops + 1, (), next(counter), nodes + (nxt,), grown))
            pushed += 1
        if pushed > budget:
            raise PathBudgetExceeded(budget, len(found))
    return found


def pairwise_overlap(frames: list[pl.DataFrame], params: dict[str, Any], resolved: dict[str, Any]) -> pl.DataFrame:
    """Jaccard of node-identity sets and Σ min(|e_a|,|e_b|) / Σ max(|e_a|,|e_b|) for every pair."""
    (frame,) = frames
    circuits = params["circuits"]
    if len(circuits) < 2:
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


def order_effects(frames: list[pl.DataFrame], params: dict[str, Any], resolved: dict[str, Any]) -> pl.DataFrame:
    """Put each feature's effects (and circuit ids, in step) in the order the circuits (or tasks) were given;
    rank the features."""
    (frame,) = frames
    if frame.height == 0:
        return frame
    if params.get("circuits"):
        rank = {c: (i, "") for i, c in enumerate(params["circuits"])}
        key = lambda cid, task: rank[cid]  # noqa: E731
    else:
        task_rank = {t: i for i, t in enumerate(params["tasks"])}
        key = lambda cid, task: (task_rank[task], cid)  # noqa: E731
    effects, circuits = [], []
    for ids, tasks, values in frame.select("circuit_ids", "circuit_tasks", "effects").iter_rows():
        order = sorted(range(len(ids)), key=lambda i: key(ids[i], tasks[i]))
        effects.append([values[i] for i in order])
        circuits.append([ids[i] for i in order])
    out = frame.with_columns(pl.Series("effects", effects, dtype=pl.List(pl.Float64)),
                             pl.Series("circuit_ids", circuits, dtype=pl.List(pl.String)))
    return out.with_columns(
        pl.col("effects").list.eval(pl.element().abs()).list.max().alias("_top")
    ).sort(["count", "_top", "feature"], descending=[True, True, False])


POST_STEPS: dict[str, PostStep] = {
    "upstream_paths": upstream_paths,
    "downstream_paths": downstream_paths,
    "pairwise_overlap": pairwise_overlap,
    "order_effects": order_effects,
}

__all__ = ["POST_STEPS", "PATH_BUDGET", "PathBudgetExceeded", "best_paths"]
