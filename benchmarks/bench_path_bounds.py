"""Runaway path queries are bounded: time and peak memory of upstream-paths on a dense circuit.

Issue 10 item 5: ``sfc query upstream-paths -p max_hops 8 -p k 1000000000`` on a dense circuit (400 features,
40k edges) grew past 6 GB in a minute. Now ``k`` is at most 10000 and the search stops at a budget of
partial paths with a sentence. This prints, for a few (max_hops, k): the outcome, seconds, and the
peak of Python allocations during the query (tracemalloc).

    .venv/bin/python benchmarks/bench_path_bounds.py [--features-per-site 57]
"""

from __future__ import annotations

import argparse
import tracemalloc
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> None:
    from builders import build_circuit
    from sfc_graph.errors import QueryError
    from sfc_graph.store import open_store

    parser = argparse.ArgumentParser()
    parser.add_argument("--features-per-site", type=int, default=57)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="sfc-bench-paths-"))
    bundle = build_circuit(root / "dense", "dense", features_per_site=args.features_per_site,
                           feature_pool=range(args.features_per_site * 2), edge_prob=0.9, seed=7)
    print(f"circuit: {bundle.nodes.height} nodes, {bundle.edges.height} edges")
    with open_store(root / "store") as s:
        s.load(bundle)
    with open_store(root / "store", read_only=True, create=False) as s:
        for max_hops, k in [(3, 10), (8, 10), (8, 10_000), (8, 1_000_000_000)]:
            started = time.perf_counter()
            try:
                rows = s.query("upstream-paths", circuit="dense", max_hops=max_hops, k=k).height
                outcome = f"{rows} paths"
            except QueryError as exc:
                outcome = f"refused: {str(exc)[:90]}…"
            seconds = time.perf_counter() - started
            tracemalloc.start()  # a second run for memory: tracing slows Python down several times
            try:
                s.query("upstream-paths", circuit="dense", max_hops=max_hops, k=k)
            except QueryError:
                pass
            peak = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
            print(f"max_hops {max_hops:>2} k {k:>10}: {seconds:6.2f} s, peak Python memory {peak:6.1f} MB  ({outcome})")

if __name__ == "__main__":
    main()
