"""Benchmark of behaviour discovery (issue 14): circuits per minute, local vs Ray, and the named queries on a
store of real discovered circuits.

    .venv/bin/python benchmarks/bench_discovery.py agreement [--clusters 16] [--contexts 1024]
    .venv/bin/python benchmarks/bench_discovery.py throughput [--clusters 16] [--method attrib] [--workers 2]
    .venv/bin/python benchmarks/bench_discovery.py store --circuits 1000 [--store DIR] [--keep]

``agreement``: the adjusted Rand index and purity of the clusters against the stream's planted labels, for every
feature kind (act, grad, both) and algorithm, all from one set of context vectors; over all contexts, and over the
contexts a planted mechanism decides (the stream is mostly filler, labelled ``none``).

``throughput``: one discovery on the zoo's labelled stream (contexts, vectors and clustering once), then the same
circuits computed twice in the same run — in this process (one core), and on a local Ray cluster of
``--workers`` workers (one core each) — into separate directories; prints circuits per minute of each, the
ratio, and checks both produced the same circuit ids.

``store``: discoveries with different seeds (and feature kinds) on the zoo stream, each loaded into one
embedded store with its Behaviour records, until at least ``--circuits`` circuits are in; prints the build
time, the size on disk, the discovery's agreement figures, and the p50/p95 of the named queries (the workload of
``bench_queries.py``) on these real circuits.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))


def _discovery(args, seed: int, features: str):
    from sfc_graph.ingest.discovery import DiscoverySettings, discover
    from sfc_graph.ingest.model import load_model

    handle = load_model("toy-zoo", device="cpu")
    settings = DiscoverySettings(n_clusters=args.clusters, features=features, algorithm=args.algorithm,
                                 n_contexts=args.contexts, seed=seed, examples_per_circuit=args.examples,
                                 min_cluster_size=2)
    return handle, discover(handle, "zoo", settings)


def _circuit_settings(args):
    from sfc_graph.ingest.compute import CircuitSettings
    from sfc_graph.ingest.discovery import circuit_settings

    return circuit_settings(CircuitSettings(method=args.method, node_threshold=args.node_threshold,
                                            edge_threshold=args.edge_threshold, eval_thresholds=()))


def agreement_table(args) -> None:
    """ARI and purity of every feature kind and algorithm, from one set of context vectors."""
    from sfc_graph import zoo
    from sfc_graph.ingest.discovery import (
        DiscoverySettings, agreement, cluster, context_vectors, embed, sample_contexts,
    )
    from sfc_graph.ingest.model import load_model

    torch_threads(1)
    handle = load_model("toy-zoo", device="cpu")
    base = DiscoverySettings(n_clusters=args.clusters, n_contexts=args.contexts, seed=0,
                             exclude_labels=tuple(args.exclude_label))
    contexts = sample_contexts(zoo.load_stream(), base)
    t0 = time.perf_counter()
    vectors = context_vectors(handle, contexts, batch_size=128)
    labels = [c.label for c in contexts]
    counts = {label: labels.count(label) for label in sorted(set(labels))}
    print(f"{len(contexts)} contexts of the zoo stream ({counts}); vectors in {time.perf_counter() - t0:.1f} s")
    print(f"{'features':<9}{'algorithm':<10}{'ARI':>7}{'purity':>8}{'ARI planted':>13}{'purity planted':>16}")
    for features in ("act", "grad", "both"):
        for algorithm in ("kmeans", "spectral"):
            settings = DiscoverySettings(n_clusters=args.clusters, n_contexts=args.contexts, features=features,
                                         algorithm=algorithm, seed=0)
            found = agreement(cluster(embed(vectors, settings), settings), labels)
            print(f"{features:<9}{algorithm:<10}{found['ari']:>7.3f}{found['purity']:>8.3f}"
                  f"{found.get('ari_planted', float('nan')):>13.3f}{found.get('purity_planted', float('nan')):>16.3f}")


def throughput(args) -> None:
    from sfc_graph.ingest.executor import CircuitJob, ModelSpec, run_circuits

    torch_threads(1)
    started = time.perf_counter()
    _, found = _discovery(args, seed=0, features="grad")
    print(f"discovery: {len(found.behaviours)} behaviours from {len(found.contexts)} contexts in "
          f"{time.perf_counter() - started:.1f} s; agreement {found.agreement}")
    spec = ModelSpec(model="toy-zoo", dictionaries=("toy-zoo",), device="cpu", threads=1)
    settings = _circuit_settings(args)
    results = {}
    import ray

    # Ray starts its workers at nice 15 (its worker_niceness); this benchmark runs them at the local run's
    # priority, so that both executors compete equally with whatever else the machine runs.
    os.environ.setdefault("RAY_worker_niceness", "0")
    t0 = time.perf_counter()
    ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)  # joined by the executor
    print(f"starting a local Ray cluster of {args.workers} CPUs: {time.perf_counter() - t0:.1f} s (not counted below)")
    with tempfile.TemporaryDirectory(prefix="sfc-bench-discovery-") as tmp:
        for executor in ("local", "ray"):
            jobs = [CircuitJob(task=b.task, settings=settings, out=Path(tmp) / executor, key=b.name)
                    for b in found.behaviours]
            t0 = time.perf_counter()
            done = list(run_circuits(spec, jobs, executor=executor, workers=args.workers))
            seconds = time.perf_counter() - t0
            results[executor] = (seconds, sorted(d.circuit_id for d in done))
            print(f"{executor:>5}: {len(done)} circuits in {seconds:.1f} s = {60 * len(done) / seconds:.1f} "
                  f"circuits/min" + (f" ({args.workers} workers, one thread each, incl. their model loading)"
                                     if executor == "ray" else " (one process, one thread)"))
    ray.shutdown()
    same = results["local"][1] == results["ray"][1]
    print(f"ray / local circuits per minute: {results['local'][0] / results['ray'][0]:.2f}x; "
          f"same circuits: {'yes' if same else 'NO'}")


def store_benchmark(args) -> None:
    from bench_queries import dir_size, run_workloads, workloads
    from sfc_graph.ingest.discovery import run_discovery
    from sfc_graph.store import open_store

    torch_threads(1)
    tmp = None
    if args.store is None:
        tmp = Path(tempfile.mkdtemp(prefix="sfc-bench-discovered-"))
        args.store = tmp / "store"
    try:
        from sfc_graph.ingest.discovery import DiscoverySettings
        from sfc_graph.ingest.model import load_model

        handle = load_model("toy-zoo", device="cpu")
        started = time.perf_counter()
        total, seed = 0, 0
        with open_store(str(args.store)) as store:
            while total < args.circuits:
                features = ("grad", "act", "both")[seed % 3]
                settings = DiscoverySettings(n_clusters=args.clusters, features=features, algorithm=args.algorithm,
                                             n_contexts=args.contexts, seed=seed, examples_per_circuit=args.examples,
                                             min_cluster_size=2)
                run = run_discovery(handle, model_spec="toy-zoo", dict_specs=["toy-zoo"], corpus="zoo",
                                    settings=settings, circuit=_circuit_settings(args),
                                    out=args.store.parent / "bundles", store=store)
                total = store.circuits().height
                found = run.discovery
                print(f"seed {seed} ({features}): {len(found.behaviours)} behaviours, ARI "
                      f"{found.agreement.get('ari', float('nan')):.3f}, purity {found.agreement.get('purity', float('nan')):.3f}, "
                      f"overlap within {run.overlap.get('within', float('nan')):.3f} / across "
                      f"{run.overlap.get('across', float('nan')):.3f}; store has {total} circuits "
                      f"({time.perf_counter() - started:.0f} s, RSS {_rss_mib():,.0f} MiB)", flush=True)
                seed += 1
        build = time.perf_counter() - started
        print(f"build: {total} circuits in {build:.0f} s ({60 * total / build:.1f} circuits/min incl. discovery "
              f"and loading); store size on disk {dir_size(args.store) / 2**20:,.0f} MiB")
        with open_store(str(args.store), read_only=True) as store:
            args.repeats, args.seed = 40, 0
            results = run_workloads(store, workloads(store, args))
            print(f"\n{'query':<32}{'runs':>5}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}{'rows':>8}")
            for label, runs, p50, p95, worst, rows in results:
                print(f"{label:<32}{runs:>5}{p50:>9.1f}{p95:>9.1f}{worst:>9.1f}{rows:>8.0f}")
            t0 = time.perf_counter()
            behaviours = store.query("behaviours")
            print(f"{'behaviours (all)':<32}{1:>5}{(time.perf_counter() - t0) * 1000:>9.1f}{'':>18}{behaviours.height:>8}")
    finally:
        if tmp is not None and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


def _rss_mib() -> float:
    """This process's resident memory now (not the peak): a store kept open across discoveries must not grow."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def torch_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["agreement", "throughput", "store"])
    parser.add_argument("--clusters", type=int, default=16)
    parser.add_argument("--contexts", type=int, default=1024)
    parser.add_argument("--algorithm", default="kmeans", choices=["spectral", "kmeans"])
    parser.add_argument("--examples", type=int, default=16, help="examples per circuit")
    parser.add_argument("--method", default="attrib", choices=["attrib", "ig"])
    parser.add_argument("--node-threshold", type=float, default=0.02)
    parser.add_argument("--edge-threshold", type=float, default=0.002)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--circuits", type=int, default=1000)
    parser.add_argument("--store", type=Path, default=None)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--exclude-label", action="append", default=[],
                        help="agreement: leave out contexts with this planted label (e.g. none)")
    args = parser.parse_args()
    print(f"sfc-graph discovery benchmark: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    {"agreement": agreement_table, "throughput": throughput, "store": store_benchmark}[args.what](args)


if __name__ == "__main__":
    main()
