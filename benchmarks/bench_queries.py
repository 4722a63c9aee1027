"""Benchmark of the named queries on a large synthetic store (issue 5).

    .venv/bin/python benchmarks/bench_queries.py                       # 1,000 circuits x 10,000 edges
    .venv/bin/python benchmarks/bench_queries.py --circuits 50 --edges 2000   # a quick run
    .venv/bin/python benchmarks/bench_queries.py --store /tmp/bench-store --keep   # build once ...
    .venv/bin/python benchmarks/bench_queries.py --store /tmp/bench-store --reuse  # ... query again

Builds an embedded store of N synthetic circuits of M edges each over one model of ``--layers`` layers
(sites embed, attn_l, mlp_l, resid_l), one dictionary per site: the "few dictionaries" every circuit
draws its features from. Each circuit takes ``--features-per-site`` latents per site, drawn from a
Zipf-like popularity over the dictionary (so popular features are shared by many circuits, rare ones by
few), one error node per site and the output; its M edges are drawn without replacement among the pairs
the model's wiring allows (resid_{l-1} -> attn_l, mlp_l, resid_l; attn_l -> mlp_l, resid_l; mlp_l -> resid_l;
last resid -> output). Circuits are spread over ``--tasks`` tasks. Bundles are generated with numpy/polars,
checked with ``validate_tables`` and loaded with ``store.load_many([Bundle(...), ...])`` (no Parquet files).

Bundles are generated and loaded 50 at a time (the store itself reopens its database every few dozen COPYs:
ladybug 0.22.0 keeps memory for every COPY until the database closes, see ``sfc_graph/store/ladybug.py``).
Circuits are loaded with ``store.load_many`` (as ``sfc load B1 B2 ...`` does), which writes many small
circuits per transaction: with ladybug 0.22.0 the checkpoint that follows every commit is most of a small
circuit's load time.

Prints the build time (and what a load spends its time on), the store's size on disk, and the p50/p95/max
warm latency of each named query over ``--repeats`` different parameter sets (each run once untimed first).
Targets: p95 <= 100 ms for top-nodes, feature-circuits, neighborhood, layer-profile, error-share,
circuit-overlap on a pair and upstream-paths up to 4 hops; <= 1 s for shared-features over 50 circuits.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from sfc_graph import naming
from sfc_graph.bundle import Bundle, validate_tables
from sfc_graph.store import open_store

TARGETS_MS = {
    "top-nodes": 100, "feature-circuits": 100, "neighborhood": 100, "layer-profile": 100, "error-share": 100,
    "circuit-overlap (pair)": 100, "upstream-paths (3 hops)": 100, "upstream-paths (4 hops)": 100,
    "shared-features (50 circuits)": 1000,
}


# --- synthetic circuits ----------------------------------------------------------------------------------

def sites(n_layers: int) -> list[str]:
    return ["embed"] + [naming.site_name(kind, layer) for layer in range(n_layers) for kind in ("attn", "mlp", "resid")]


def wiring(n_layers: int) -> list[tuple[str, str]]:
    pairs = []
    for layer in range(n_layers):
        before = "embed" if layer == 0 else naming.site_name("resid", layer - 1)
        attn, mlp, resid = (naming.site_name(kind, layer) for kind in ("attn", "mlp", "resid"))
        pairs += [(before, attn), (before, mlp), (before, resid), (attn, mlp), (attn, resid), (mlp, resid)]
    return pairs


def manifest_for(circuit_id: str, task: str, model: str, n_layers: int, d_dict: int) -> dict:
    return {
        "schema_version": 1, "circuit_id": circuit_id, "task": task, "model": model,
        "dictionaries": {s: {"id": f"{model}/{s}/sae-{d_dict}", "kind": "sae", "d_dict": d_dict} for s in sites(n_layers)},
        "method": "attrib", "metric": "logit_diff", "aggregation": "sum", "n_examples": 64,
        "evaluation": [], "files": {}, "created_at": "2026-11-21T00:00:00+00:00", "producer": "bench_queries",
    }


def synthetic_bundle(rng: np.random.Generator, index: int, *, n_edges: int, n_layers: int, per_site: int,
                     d_dict: int, popularity: np.ndarray, n_tasks: int, model: str) -> Bundle:
    site_list = sites(n_layers)
    node_ids: dict[str, list[str]] = {}
    cols = {"node_id": [], "kind": [], "site": [], "layer": [], "index": []}
    for site in site_list:
        kind, layer = naming.parse_site_name(site)
        latents = np.sort(rng.choice(d_dict, size=per_site, replace=False, p=popularity))
        ids = [naming.feature_id(site, i) for i in latents] + [naming.error_id(site)]
        node_ids[site] = ids
        cols["node_id"] += ids
        cols["kind"] += ["feature"] * per_site + ["error"]
        cols["site"] += [kind] * (per_site + 1)
        cols["layer"] += [layer] * (per_site + 1)
        cols["index"] += latents.tolist() + [None]
    for key, value in (("node_id", naming.OUTPUT_ID), ("kind", "output"), ("site", "output"), ("layer", -1), ("index", None)):
        cols[key].append(value)
    n_nodes = len(cols["node_id"])
    nodes = pl.DataFrame(cols, schema={"node_id": pl.String, "kind": pl.String, "site": pl.String,
                                       "layer": pl.Int64, "index": pl.Int64}).with_columns(
        pl.lit(-1, dtype=pl.Int64).alias("position"),
        pl.Series("effect", rng.standard_t(3, n_nodes) * 0.05, dtype=pl.Float64),
    )

    blocks = [(node_ids[a], node_ids[b]) for a, b in wiring(n_layers)]
    last = node_ids[naming.site_name("resid", n_layers - 1)]
    blocks.append((last, [naming.OUTPUT_ID]))
    sizes = np.array([len(a) * len(b) for a, b in blocks])
    total = int(sizes.sum())
    if n_edges > total:
        raise SystemExit(f"--edges {n_edges} exceeds the {total} pairs the wiring allows; raise --features-per-site")
    flat = np.sort(rng.choice(total, size=n_edges, replace=False))
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    block_of = np.searchsorted(starts, flat, side="right") - 1
    src, dst = [], []
    for b, (a_ids, b_ids) in enumerate(blocks):
        offsets = flat[block_of == b] - starts[b]
        src += [a_ids[o] for o in offsets // len(b_ids)]
        dst += [b_ids[o] for o in offsets % len(b_ids)]
    edges = pl.DataFrame({
        "src": src, "dst": dst,
        "src_position": np.full(n_edges, -1, dtype=np.int64), "dst_position": np.full(n_edges, -1, dtype=np.int64),
        "weight": rng.normal(0.0, 0.1, n_edges),
    })
    manifest = manifest_for(f"bench-{index:05d}", f"task-{index % n_tasks:02d}", model, n_layers, d_dict)
    validate_tables(manifest, nodes, edges, where=f"<synthetic {manifest['circuit_id']}>")
    return Bundle(manifest=manifest, nodes=nodes, edges=edges)


def build_store(path: Path, args) -> dict:
    rng = np.random.default_rng(args.seed)
    ranks = np.arange(1, args.d_dict + 1, dtype=np.float64)
    popularity = ranks ** -args.zipf
    popularity /= popularity.sum()
    popularity = rng.permutation(popularity)  # popular latents anywhere in the dictionary
    figures = {"generate_s": 0.0, "load_s": 0.0, "loads": []}
    profiler = cProfile.Profile() if args.profile_loads else None
    started = time.perf_counter()
    store = open_store(path)
    for first in range(0, args.circuits, BATCH):
        t0 = time.perf_counter()
        batch = [
            synthetic_bundle(rng, i, n_edges=args.edges, n_layers=args.layers, per_site=args.features_per_site,
                             d_dict=args.d_dict, popularity=popularity, n_tasks=args.tasks, model="bench")
            for i in range(first, min(first + BATCH, args.circuits))
        ]
        t1 = time.perf_counter()
        profile = profiler is not None and first + BATCH >= args.circuits
        if profile:
            profiler.enable()
        store.load_many(batch)  # what `sfc load B1 B2 ...` does: circuits grouped into few transactions
        if profile:
            profiler.disable()
        t2 = time.perf_counter()
        figures["generate_s"] += t1 - t0
        figures["load_s"] += t2 - t1
        figures["loads"].append((t2 - t1) / len(batch))
        done = first + len(batch)
        print(f"  loaded {done:>5}/{args.circuits} circuits; {time.perf_counter() - started:7.1f} s; "
              f"last loads {figures['loads'][-1] * 1000:6.0f} ms each; RSS {rss_mib():,.0f} MiB", flush=True)
    figures["stats"] = store.stats()
    store.close()
    figures["build_s"] = time.perf_counter() - started
    if profiler is not None:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(18)
        figures["profile"] = text.getvalue()
    return figures


BATCH = 50  # bundles generated, then loaded, at a time


def rss_mib() -> float:
    try:
        return int(Path("/proc/self/status").read_text().split("VmRSS:")[1].split()[0]) / 1024
    except (OSError, IndexError, ValueError):
        return float("nan")


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# --- the query workload ----------------------------------------------------------------------------------

def workloads(store, args) -> dict[str, list[dict]]:
    """For each benchmarked query, ``--repeats`` parameter sets over different circuits."""
    rnd = random.Random(args.seed)
    listed = store.circuits()
    # circuits with feature nodes to ask about (a discovered behaviour's circuit can be its output alone)
    ids = listed.filter(pl.col("n_nodes") > 2)["id"].to_list()
    pick = lambda: rnd.choice(ids)  # noqa: E731
    circuits = [pick() for _ in range(args.repeats)]
    features, nodes = [], []
    for cid in circuits:
        top = store.query("top-nodes", circuit=cid, kind="feature", k=5)
        features.append(top["feature"][rnd.randrange(top.height)])
        nodes.append(top["node_id"][rnd.randrange(top.height)])
    # a source for downstream paths: an embedding feature, else the circuit's earliest feature
    embeds = [store.query("top-nodes", circuit=cid, kind="feature", k=200).sort("layer")["node_id"][0]
              for cid in circuits]
    n_shared = min(50, len(ids))
    tasks = sorted(set(store.circuits()["task"].to_list()))
    return {
        "top-nodes": [{"circuit": c} for c in circuits],
        "feature-circuits": [{"feature": f} for f in features],
        "neighborhood": [{"circuit": c, "node": n} for c, n in zip(circuits, nodes)],
        "layer-profile": [{"circuit": c} for c in circuits],
        "error-share": [{"circuit": c} for c in circuits],
        "circuit-overlap (pair)": [{"circuits": [c, rnd.choice([i for i in ids if i != c])]} for c in circuits],
        "circuit-diff": [{"a": c, "b": rnd.choice([i for i in ids if i != c])} for c in circuits],
        "upstream-paths (3 hops)": [{"circuit": c, "max_hops": 3} for c in circuits],
        "upstream-paths (4 hops)": [{"circuit": c, "max_hops": 4} for c in circuits],
        "downstream-paths (3 hops)": [{"circuit": c, "source": s, "max_hops": 3} for c, s in zip(circuits, embeds)],
        f"shared-features ({n_shared} circuits)": [{"circuits": rnd.sample(ids, n_shared)}
                                                   for _ in range(max(3, args.repeats // 4))],
        "shared-features (2 tasks)": [{"tasks": rnd.sample(tasks, min(2, len(tasks)))}
                                      for _ in range(max(3, args.repeats // 4))],
        "circuit-overlap (10 circuits)": [{"circuits": rnd.sample(ids, min(10, len(ids)))}
                                          for _ in range(max(3, args.repeats // 4))],
    }


def run_workloads(store, work: dict[str, list[dict]]) -> list[tuple]:
    results = []
    for label, param_sets in work.items():
        name = label.split(" (")[0]
        for params in param_sets:  # warm-up: every parameter set once, untimed
            store.query(name, **params)
        times, rows = [], 0
        for params in param_sets:
            t0 = time.perf_counter()
            frame = store.query(name, **params)
            times.append((time.perf_counter() - t0) * 1000)
            rows += frame.height
        times.sort()
        p95 = times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]
        results.append((label, len(times), statistics.median(times), p95, times[-1], rows / len(times)))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--circuits", type=int, default=1000)
    parser.add_argument("--edges", type=int, default=10_000, help="edges per circuit")
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--features-per-site", type=int, default=50)
    parser.add_argument("--d-dict", type=int, default=4096)
    parser.add_argument("--zipf", type=float, default=1.0, help="feature popularity exponent (0: uniform)")
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=40, help="parameter sets per query")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--store", type=Path, default=None, help="store directory (default: a temporary one)")
    parser.add_argument("--reuse", action="store_true", help="query an existing --store instead of building")
    parser.add_argument("--keep", action="store_true", help="keep the store after the run")
    parser.add_argument("--profile-loads", type=int, default=0, metavar="K",
                        help="profile the last K loads and print where the time goes")
    args = parser.parse_args()

    tmp = None
    if args.store is None:
        tmp = Path(tempfile.mkdtemp(prefix="sfc-bench-"))
        args.store = tmp / "store"
    try:
        print(f"sfc-graph query benchmark: embedded store (ladybug), {os.cpu_count()} CPUs, python {sys.version.split()[0]}")
        if not args.reuse:
            if args.store.exists():
                raise SystemExit(f"{args.store} exists; remove it, or pass --reuse to query it")
            print(f"building {args.circuits} circuits x {args.edges} edges ({args.layers} layers, "
                  f"{args.features_per_site} features per site, d_dict {args.d_dict}, zipf {args.zipf}) ...", flush=True)
            figures = build_store(args.store, args)
            stats = figures["stats"]
            counts = {r["name"]: r["count"] for r in stats.iter_rows(named=True)}
            loads = sorted(figures["loads"])
            print(f"build: {figures['build_s']:.1f} s total = generate+validate {figures['generate_s']:.1f} s + "
                  f"load {figures['load_s']:.1f} s; per load p50 {statistics.median(loads) * 1000:.0f} ms, "
                  f"first {figures['loads'][0] * 1000:.0f} ms, last {figures['loads'][-1] * 1000:.0f} ms")
            print(f"graph: {counts['Circuit']} circuits, {counts['CircuitNode']:,} circuit nodes, "
                  f"{counts['Feature']:,} features, {counts['EDGE']:,} edges, {counts['CONTAINS']:,} CONTAINS")
            if "profile" in figures:
                print(f"profile of the last batch of loads:\n{figures['profile']}")
        print(f"store size on disk: {dir_size(args.store) / 2**20:,.0f} MiB ({args.store})")
        with open_store(args.store, read_only=True) as store:
            work = workloads(store, args)
            results = run_workloads(store, work)
        print(f"\n{'query':<32}{'runs':>5}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}{'rows':>8}  target")
        for label, runs, p50, p95, worst, rows in results:
            target = TARGETS_MS.get(label) or (1000 if label.startswith("shared-features (50") else None)
            verdict = "" if target is None else f"p95 <= {target} ms: {'ok' if p95 <= target else 'MISSED'}"
            print(f"{label:<32}{runs:>5}{p50:>9.1f}{p95:>9.1f}{worst:>9.1f}{rows:>8.0f}  {verdict}")
    finally:
        if tmp is not None and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
