"""Load benchmark for the embedded store (issue 2). One command, prints figures:

    .venv/bin/python benchmarks/bench_load.py [--nodes 100000] [--edges 1000000]

1. A synthetic bundle (default 100k nodes, 1M edges) loaded into a fresh store with the full pipeline
   (read + validate the bundle, bookkeeping, COPY in one transaction): wall time, edges/s, peak RSS.
2. In the same run, the bare baseline: the bundle's two Parquet files read and ``COPY``-ed as they are into
   a fresh LadybugDB with one node table and one relationship table (a key ``node_id@position`` per node,
   the edges' endpoints as those keys). The ratio ours/bare is the cost of our validation, graph mapping
   and bookkeeping (target <= 1.5; peak RSS <= 2 GiB). Both timings start with the database creation
   and end with the commit, in a process of their own.
3. Ten bundles that share features, loaded one after another into one store.
4. Re-loading the big bundle: a no-op that should take well under a second.
5. ``--profile``: cProfile of our load (top functions by cumulative time), for the record of where it goes.
6. ``--schema-costs``: what each part of the graph schema costs. The big bundle's rows, as the loader builds
   them, written (COPYs + COMMIT, in one transaction, each run in its own process) with one relationship
   table or column left out at a time, beside the full schema and the bare two-table COPY; medians of
   ``--repeats`` runs, interleaved. It answers "which schema decision buys how much of the ratio".
Each measurement runs in its own process so that peak RSS belongs to it alone.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

PROFILE = bool(os.environ.get("SFC_BENCH_PROFILE"))
SITES = ["embed"] + [f"{kind}_{layer}" for layer in range(3) for kind in ("attn", "mlp", "resid")]
BARE_SCHEMA = (
    "CREATE NODE TABLE N(key STRING, node_id STRING, kind STRING, site STRING, layer INT64, latent INT64, "
    "position INT64, effect DOUBLE, PRIMARY KEY(key))",
    "CREATE REL TABLE E(FROM N TO N, weight DOUBLE)",
)


def synthetic_bundle(out: Path, circuit_id: str, n_nodes: int, n_edges: int, *, seed: int, d_dict: int = 32768):
    from sfc_graph import naming
    from sfc_graph.bundle import write_bundle

    rng = np.random.default_rng(seed)
    per_site = n_nodes // len(SITES)
    node_ids, kinds, sites, layers, indices = [], [], [], [], []
    for site in SITES:
        kind, layer = naming.parse_site_name(site)
        latents = np.sort(rng.choice(d_dict, size=per_site - 1, replace=False))
        node_ids += [naming.feature_id(site, i) for i in latents] + [naming.error_id(site)]
        kinds += ["feature"] * (per_site - 1) + ["error"]
        sites += [kind] * per_site
        layers += [layer] * per_site
        indices += latents.tolist() + [None]
    node_ids.append(naming.OUTPUT_ID); kinds.append("output"); sites.append("output"); layers.append(-1); indices.append(None)
    n = len(node_ids)
    nodes = pl.DataFrame({
        "node_id": node_ids, "kind": kinds, "site": sites, "layer": layers,
        "index": pl.Series(indices, dtype=pl.Int64), "position": np.full(n, -1), "effect": rng.normal(size=n),
    })
    # Edges go from a node to a node of a later site (as in a real circuit), drawn without duplicates.
    order = np.repeat(np.arange(len(SITES)), per_site)
    order = np.append(order, len(SITES))
    src = rng.integers(0, n - 1, size=int(n_edges * 3))
    dst = rng.integers(0, n, size=int(n_edges * 3))
    keep = order[src] < order[dst]
    pairs = np.unique(np.stack([src[keep], dst[keep]], axis=1), axis=0)
    pairs = pairs[rng.permutation(len(pairs))[:n_edges]]
    ids = np.array(node_ids, dtype=object)
    edges = pl.DataFrame({
        "src": ids[pairs[:, 0]].tolist(), "dst": ids[pairs[:, 1]].tolist(),
        "src_position": np.full(len(pairs), -1), "dst_position": np.full(len(pairs), -1),
        "weight": rng.normal(size=len(pairs)),
    })
    dictionaries = {s: {"id": f"bench/{s}/sae-{d_dict}", "kind": "sae", "d_dict": d_dict, "sha256": "0" * 64} for s in SITES}
    manifest = {"circuit_id": circuit_id, "task": f"task-{seed % 5}", "model": "bench", "dictionaries": dictionaries,
                "method": "attrib", "metric": "logit_diff", "aggregation": "sum", "n_examples": 64}
    return write_bundle(out, manifest, nodes, edges)


# --- measurements, each run in a child process (python bench_load.py --child KIND ARGS) -------------------
def child_ours(store: str, *bundles: str) -> dict:
    from sfc_graph.bundle import read_bundle, read_manifest
    from sfc_graph.store import open_store

    def load() -> list:
        with open_store(store) as s:
            # What `sfc load B1 B2 ...` does: skip stored circuits by manifest, validate the rest, load them.
            pending = [b for b in bundles if not s.has_circuit(read_manifest(b)["circuit_id"])]
            return s.load_many([read_bundle(b) for b in pending])

    start = time.perf_counter()
    if PROFILE:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        results = profiler.runcall(load)
        seconds = time.perf_counter() - start
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(30)
    else:
        results = load()
        seconds = time.perf_counter() - start
    with open_store(store) as s:
        features = int(s.stats().filter(pl.col("name") == "Feature")["count"][0])
    return {"seconds": seconds, "loaded": sum(r.loaded for r in results), "features": features}


def child_bare(store: str, bundle: str) -> dict:
    import ladybug

    def key(node: str, position: str) -> pl.Expr:
        return pl.col(node) + "@" + pl.col(position).cast(pl.String)

    start = time.perf_counter()
    Path(store).mkdir(parents=True)
    db = ladybug.Database(str(Path(store) / "graph.lbdb"))
    conn = ladybug.Connection(db)
    for ddl in BARE_SCHEMA:
        conn.execute(ddl)
    nodes = pl.read_parquet(Path(bundle) / "nodes.parquet")
    nodes = nodes.select(key("node_id", "position").alias("key"), "node_id", "kind", "site", "layer",
                         pl.col("index").alias("latent"), "position", "effect")
    edges = pl.read_parquet(Path(bundle) / "edges.parquet")
    edges = edges.select(key("src", "src_position").alias("from"), key("dst", "dst_position").alias("to"), "weight")
    conn.execute("BEGIN TRANSACTION")
    conn.execute("COPY N FROM $rows", {"rows": nodes})
    conn.execute("COPY E FROM $rows", {"rows": edges})
    conn.execute("COMMIT")
    return {"seconds": time.perf_counter() - start}


# --schema-costs: what is left out in each variant (relationship tables, or table.column pairs)
SCHEMA_VARIANTS = {
    "full schema": (),
    "without CONTAINS": ("CONTAINS",),
    "without INSTANCE_OF": ("INSTANCE_OF",),
    "without HAS_NODE": ("HAS_NODE",),
    "without IN_DICTIONARY": ("IN_DICTIONARY",),
    "without EDGE.weight_invariant": ("EDGE.weight_invariant",),
    "without CircuitNode.circuit/feature/identity": ("CircuitNode.circuit", "CircuitNode.feature",
                                                    "CircuitNode.identity"),
}


def child_variant(store: str, bundle: str, variant: str) -> dict:
    """COPY the loader's rows of ``bundle`` into a fresh database with the schema minus ``variant``'s parts."""
    import ladybug

    from sfc_graph.bundle import read_bundle
    from sfc_graph.graph import NODE_LABELS, REL_TYPES, circuit_rows
    from sfc_graph.store.ladybug import schema_ddl

    left_out = SCHEMA_VARIANTS[variant]
    rows = circuit_rows(read_bundle(bundle))
    dropped_columns: dict[str, list[str]] = {}
    for part in left_out:
        if "." in part:
            table, column = part.split(".")
            dropped_columns.setdefault(table, []).append(column)
    Path(store).mkdir(parents=True)
    db = ladybug.Database(str(Path(store) / "graph.lbdb"))
    conn = ladybug.Connection(db)
    kinds = {label.name: dict(label.properties) for label in NODE_LABELS}
    kinds.update({rel.name: dict(rel.properties) for rel in REL_TYPES})
    for ddl in schema_ddl():
        table = ddl.split("EXISTS ", 1)[1].split("(", 1)[0]
        if table in left_out:
            continue
        for column in dropped_columns.get(table, []):
            ddl = ddl.replace(f", {column} {kinds[table][column]}", "")
        conn.execute(ddl)
    conn.execute("COPY Model FROM $rows", {"rows": rows.nodes["Model"].head(0)})  # the pandas import, untimed
    start = time.perf_counter()
    conn.execute("BEGIN TRANSACTION")
    for label in NODE_LABELS:
        frame = rows.nodes[label.name].drop(dropped_columns.get(label.name, []))
        if frame.height:
            conn.execute(f"COPY {label.name} FROM $rows", {"rows": frame})
    for (name, src, dst), frame in rows.rels.items():
        if frame.height and name not in left_out:
            frame = frame.drop(dropped_columns.get(name, []))
            conn.execute(f"COPY {name} FROM $rows (from='{src}', to='{dst}')", {"rows": frame})
    copies = time.perf_counter() - start
    conn.execute("COMMIT")
    return {"seconds": time.perf_counter() - start, "copies": copies}


def schema_costs(work: Path, bundle: Path, repeats: int) -> None:
    import statistics

    runs: dict[str, list[dict]] = {name: [] for name in SCHEMA_VARIANTS}
    bare: list[dict] = []
    for r in range(repeats):  # interleaved: drift on a shared machine hits every variant alike
        bare.append(run_child("bare", str(work / f"costs-bare-{r}"), str(bundle)))
        for i, name in enumerate(SCHEMA_VARIANTS):
            runs[name].append(run_child("variant", str(work / f"costs-{i}-{r}"), str(bundle), name))
    full = statistics.median(x["seconds"] for x in runs["full schema"])
    base = statistics.median(x["seconds"] for x in bare)
    print(f"\nschema costs: COPYs + COMMIT of the loader's rows, median of {repeats} (bare: its whole load)")
    print(f"{'variant':<48}{'copies s':>10}{'total s':>10}{'saves s':>10}")
    for name, results in runs.items():
        total = statistics.median(x["seconds"] for x in results)
        copies = statistics.median(x["copies"] for x in results)
        print(f"{name:<48}{copies:>10.2f}{total:>10.2f}{full - total:>10.2f}")
    print(f"{'bare COPY (two tables, read + copy + commit)':<48}{'':>10}{base:>10.2f}")


def run_child(*args: str, profile: bool = False) -> dict:
    env = {**os.environ, "SFC_BENCH_PROFILE": "1" if profile else ""}
    proc = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, env=env)
    if proc.returncode:
        raise SystemExit(f"child {args[0]} failed:\n{proc.stderr}")
    if profile:
        print(proc.stderr)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=100_000)
    parser.add_argument("--edges", type=int, default=1_000_000)
    parser.add_argument("--bundles", type=int, default=10, help="bundles in the shared-feature load")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of our full load (a separate run)")
    parser.add_argument("--only-big", action="store_true", help="skip the ten-bundle load")
    parser.add_argument("--schema-costs", action="store_true",
                        help="also time the loader's rows with each relationship table or column left out")
    parser.add_argument("--repeats", type=int, default=3, help="runs per variant for --schema-costs")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        result = {"ours": child_ours, "bare": child_bare, "variant": child_variant}[kind](*rest)
        result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return

    work = Path(tempfile.mkdtemp(prefix="sfc-bench-load-"))
    t0 = time.perf_counter()
    big = synthetic_bundle(work / "big", "bench-big", args.nodes, args.edges, seed=0)
    print(f"synthetic bundle: {big.nodes.height:,} nodes, {big.edges.height:,} edges "
          f"(written in {time.perf_counter() - t0:.1f} s) at {work}")

    bare = run_child("bare", str(work / "bare-store"), str(work / "big"))
    ours = run_child("ours", str(work / "store"), str(work / "big"))
    reload = run_child("ours", str(work / "store"), str(work / "big"))
    eps = big.edges.height / ours["seconds"]
    print(f"\nfull load (ours):  {ours['seconds']:.2f} s   {eps:,.0f} edges/s   peak RSS {ours['peak_rss_mib']:,.0f} MiB")
    print(f"bare COPY:         {bare['seconds']:.2f} s   peak RSS {bare['peak_rss_mib']:,.0f} MiB")
    print(f"ratio ours/bare:   {ours['seconds'] / bare['seconds']:.2f}   (target <= 1.5; peak RSS target <= 2048 MiB)")
    print(f"re-load (no-op):   {reload['seconds']:.2f} s   loaded={reload['loaded']}")
    if args.profile:
        print("\ncProfile of our full load (a separate run; profiling slows it down):")
        run_child("ours", str(work / "store-profiled"), str(work / "big"), profile=True)
    if args.schema_costs:
        schema_costs(work, work / "big", args.repeats)
    if args.only_big:
        return

    n_small_nodes, n_small_edges = max(args.nodes // 10, 100), max(args.edges // 10, 1000)
    paths = []
    for i in range(args.bundles):
        synthetic_bundle(work / f"small-{i}", f"bench-small-{i}", n_small_nodes, n_small_edges, seed=100 + i, d_dict=4096)
        paths.append(str(work / f"small-{i}"))
    many = run_child("ours", str(work / "store-many"), *paths)
    print(f"\n{args.bundles} bundles x ({n_small_nodes:,} nodes, {n_small_edges:,} edges), shared features: "
          f"{many['seconds']:.2f} s, {args.bundles * n_small_edges / many['seconds']:,.0f} edges/s, "
          f"{many['features']:,} distinct Feature nodes, peak RSS {many['peak_rss_mib']:,.0f} MiB")


if __name__ == "__main__":
    main()
