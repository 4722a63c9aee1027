"""Benchmark of feature dashboards (issue 15): build time, store size, and the layout chosen for them.

    .venv/bin/python benchmarks/bench_features.py                  # every zoo dictionary, the zoo corpus
    .venv/bin/python benchmarks/bench_features.py --max-docs 300   # a quick run

Builds dashboards for every latent of the zoo's dictionaries from ``--corpus`` (``zoo``: the zoo's text stream,
or its task sentences before v2) into a fresh embedded store, one torch thread, and prints

- the time to compute them and to write them, and the store's growth on disk (total and per latent);
- warm read latencies (p50/p95 over ``--repeats`` features) of what the web view and `sfc features show` do:
  one dashboard by key, the labels of a circuit's worth of features, a label search;
- the same contexts laid out the other way considered, one ``Example`` node per context (LadybugDB tables
  created here, for the comparison only): its size on disk and its dashboard read latency.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def timed(fn, repeats: int) -> tuple[float, float]:
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        fn(i)
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default="zoo")
    parser.add_argument("--max-docs", type=int, default=None)
    parser.add_argument("--k", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--keep", action="store_true", help="keep the stores (printed) instead of deleting them")
    args = parser.parse_args()

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import polars as pl
    import torch

    from sfc_graph.features import get_info, labels_for, write_dashboards
    from sfc_graph.ingest.dashboards import DashboardSettings, compute_dashboards, load_corpus
    from sfc_graph.ingest.dictionaries import load_dictionary_set
    from sfc_graph.ingest.model import load_model
    from sfc_graph.store import open_store

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="bench-features-"))
    store_dir = work / "store"
    try:
        with open_store(store_dir) as store:
            pass
        empty = du(store_dir)
        handle = load_model("toy-zoo", device="cpu")
        dictionaries = load_dictionary_set(["toy-zoo"], n_layers=handle.n_layers, d_model=handle.d_model,
                                           model_id=handle.model_id)
        corpus = load_corpus(args.corpus, handle, max_docs=args.max_docs)
        start = time.perf_counter()
        rows = compute_dashboards(handle, dictionaries, corpus, settings=DashboardSettings(k=args.k))
        computed = time.perf_counter() - start
        start = time.perf_counter()
        with open_store(store_dir) as store:
            write_dashboards(store, rows)
        written = time.perf_counter() - start
        grown = du(store_dir) - empty
        n_tokens = corpus.n_tokens - len(corpus.ids)
        print(f"corpus: {corpus.name}, {len(corpus.ids):,} documents, {n_tokens:,} tokens")
        print(f"dashboards: {rows.height:,} latents over {len(dictionaries.sites)} dictionaries, k={args.k}")
        print(f"compute: {computed:.1f} s ({n_tokens / computed:,.0f} tokens/s, one thread); write: {written:.2f} s")
        print(f"store growth: {grown / 1e6:.2f} MB ({grown / rows.height:,.0f} bytes per latent); "
              f"JSON dashboards alone: {rows['dashboard'].str.len_bytes().sum() / 1e6:.2f} MB")

        ids = rows["id"].to_list()
        rng = random.Random(0)
        picks = [rng.choice(ids) for _ in range(args.repeats)]
        with open_store(store_dir, read_only=True) as store:
            get_info(store, picks[0])
            p50, p95 = timed(lambda i: get_info(store, picks[i]), args.repeats)
            print(f"one dashboard by key (sfc features show, hover): p50 {p50:.2f} ms, p95 {p95:.2f} ms")
            batches = [rng.sample(ids, 150) for _ in range(args.repeats)]
            p50, p95 = timed(lambda i: labels_for(store, batches[i]), args.repeats)
            print(f"labels of 150 features (a diagram, a circuit view): p50 {p50:.2f} ms, p95 {p95:.2f} ms")
            words = [t for t in rows["top_tokens"].explode().drop_nulls().unique().to_list()][:50] or ["the"]
            p50, p95 = timed(lambda i: store.query("feature-search", text=words[i % len(words)]), args.repeats)
            print(f"feature-search by label text: p50 {p50:.2f} ms, p95 {p95:.2f} ms")

        # The alternative: one Example node per context (and the per-latent figures on FeatureInfo).
        import ladybug

        alt_dir = work / "examples-layout"
        alt_dir.mkdir()
        db = ladybug.Database(str(alt_dir / "graph.lbdb"))
        conn = ladybug.Connection(db)
        conn.execute("CREATE NODE TABLE Example(id STRING, feature STRING, rank INT64, activation DOUBLE, "
                     "at INT64, tokens STRING[], acts DOUBLE[], PRIMARY KEY(id))")
        examples = []
        for fid, dash in zip(rows["id"], rows["dashboard"]):
            for rank, ex in enumerate(json.loads(dash)["examples"]):
                examples.append({"id": f"{fid}#{rank}", "feature": fid, "rank": rank, "activation": ex["activation"],
                                 "at": ex["at"], "tokens": ex["tokens"], "acts": [float(a) for a in ex["acts"]]})
        frame = pl.DataFrame(examples, schema={"id": pl.String, "feature": pl.String, "rank": pl.Int64,
                                               "activation": pl.Float64, "at": pl.Int64,
                                               "tokens": pl.List(pl.String), "acts": pl.List(pl.Float64)})
        conn.execute("COPY Example FROM $rows", {"rows": frame})
        conn.close()
        db.close()
        db = ladybug.Database(str(alt_dir / "graph.lbdb"), read_only=True)
        conn = ladybug.Connection(db)
        read = "MATCH (e:Example) WHERE e.feature = $feature RETURN e.tokens, e.acts, e.at ORDER BY e.rank"
        conn.execute(read, {"feature": picks[0]}).get_as_pl()
        p50, p95 = timed(lambda i: conn.execute(read, {"feature": picks[i]}).get_as_pl(), args.repeats)
        print(f"alternative, Example nodes ({frame.height:,} of them): contexts alone take {du(alt_dir) / 1e6:.2f} MB; "
              f"one dashboard's contexts: p50 {p50:.2f} ms, p95 {p95:.2f} ms")
        conn.close()
        db.close()
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
