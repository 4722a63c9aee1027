"""Benchmark: building the input-invariant weight graph (ingest/weights.py).

1. ``sfc weights build`` on the toy zoo, as a user runs it (a subprocess): wall time and peak RSS.
2. A synthetic model of Pythia-70M's shape (6 layers, d_model 512, 8 heads of 64, vocabulary 50,304) with random
   transcoders of 32,768 features per layer, on the CPU: the top-50 inputs of every feature (resid and ov).
   The full build is 163,840 target features; on a shared two-core machine it runs on the first N features of
   every target layer for two values of N, and the CPU time (not wall time: the machine is shared) is extrapolated
   linearly from those two points
   (time = fixed + N × per-target: the fixed part is each head's low-rank OV factor ``W_dec · C W_V``, computed
   once per source layer and head whatever N is). Peak memory is measured per run (Linux: peak RSS reset through
   /proc/self/clear_refs) and compared with the bound the code is written to: weights + one ``d_sae × block``
   product (and its |·| and top-k) + the running top-k of one target layer.
3. The de-embeddings and logit lens of the synthetic model on the first N features, extrapolated the same way.

    .venv/bin/python benchmarks/bench_weights.py                 # zoo + synthetic (N = 256, 1024; M = 64, 256)
    .venv/bin/python benchmarks/bench_weights.py --targets 256 1024 --threads 1
    .venv/bin/python benchmarks/bench_weights.py --skip-synthetic
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

ROOT = Path(__file__).resolve().parents[1]
PYTHIA = dict(n_layers=6, d_model=512, n_heads=8, d_head=64, d_mlp=2048, d_vocab=50304, n_ctx=2048, d_sae=32768)


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _log(record: dict) -> None:
    """A stage's figures on stderr as soon as they exist (a long run on a busy machine still leaves its data)."""
    print(json.dumps(record), file=sys.stderr, flush=True)


def bench_zoo(threads: int) -> dict:
    sfc = Path(sys.executable).with_name("sfc")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "wg"
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run([str(sfc), "weights", "build", "--model", "toy-zoo", "--dict", "toy-zoo-transcoders",
                        "--out", str(out), "-q", "--threads", str(threads)], check=True, env=env,
                       stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        manifest = json.loads((out / "manifest.json").read_text())
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {"command_wall_s": round(wall, 2), "command_cpu_s": round(cpu, 2), "build_s": manifest["build_seconds"],
            "peak_rss_mib": round(after.ru_maxrss / 1024, 1), **manifest["counts"]}


def synthetic_model(seed: int = 0):
    """A randomly initialised HookedTransformer of Pythia-70M's shape and random transcoders (one per MLP)."""
    import torch
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from sfc_graph.ingest.dictionaries import DictionaryInfo, DictionarySet, LoadedDictionary, Transcoder
    from sfc_graph.ingest.model import wrap
    from sfc_graph.ingest.transcoder_model import TranscoderModel
    from sfc_graph.sites import Site

    torch.manual_seed(seed)
    shape = {k: v for k, v in PYTHIA.items() if k != "d_sae"}
    cfg = HookedTransformerConfig(**shape, act_fn="gelu", normalization_type="LN", device="cpu", seed=seed)
    model = HookedTransformer(cfg)
    handle = wrap(model, model_id="synthetic-pythia-70m-shape")
    d, n = PYTHIA["d_model"], PYTHIA["d_sae"]
    by_site = {}
    for layer in range(PYTHIA["n_layers"]):
        tc = Transcoder(torch.randn(d, n) / d**0.5, torch.zeros(n), torch.randn(n, d) / d**0.5, torch.zeros(d),
                        input_hook=f"blocks.{layer}.ln2.hook_normalized", apply_b_dec_to_input=False)
        info = DictionaryInfo(id=f"synthetic/mlp_{layer}/tc-{n}", kind="transcoder", architecture="transcoder",
                              d_dict=n, sha256=f"random-{seed}-{layer}", path="-")
        by_site[Site("mlp", layer)] = LoadedDictionary(Site("mlp", layer), tc, info)
    return TranscoderModel(handle, DictionarySet(by_site=by_site))


def bench_synthetic(targets: list[int], de_targets: list[int], top_k: int, block: int) -> dict:
    from sfc_graph.ingest.weights import WeightSettings, feature_edges, token_edges

    start = time.perf_counter()
    tm = synthetic_model()
    setup_s = time.perf_counter() - start
    weights_mib = _rss_mib()
    runs = []
    _log({"stage": "synthetic set-up", "seconds": round(setup_s, 1), "rss_mib": round(weights_mib, 1)})
    for n in targets:
        settings = WeightSettings(top_k=top_k, block=block, max_targets=n)
        reset = _reset_peak()
        start, cpu_start = time.perf_counter(), time.process_time()
        table = feature_edges(tm, settings)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        runs.append({"targets_per_layer": n, "seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2),
                     "rows": table.height, "peak_rss_mib": round(_peak_mib(), 1) if reset else None})
        _log({"stage": "synthetic feature edges", **runs[-1]})
        del table
    # CPU time, not wall time: on a shared machine the wall clock measures the other jobs as much as ours
    (n1, t1), (n2, t2) = [(r["targets_per_layer"], r["cpu_seconds"]) for r in runs[:2]]
    per_target = (t2 - t1) / (n2 - n1)
    fixed = t1 - per_target * n1
    full_n = PYTHIA["d_sae"]
    n_targets_total = full_n * (PYTHIA["n_layers"] - 1)
    rows_full = n_targets_total * top_k * 2
    # what bounds memory: the weights, one d_sae x block product plus its |.| copy (float32), and per target layer
    # the running top-k of both kinds (values float32 + 4 int32 tags) and the finished rows (~27 bytes each).
    product_mib = 2 * full_n * block * 4 / 2**20
    topk_mib = 2 * top_k * full_n * (4 + 16) / 2**20
    table_mib = rows_full * 27 / 2**20
    de_runs = []
    for n in de_targets:
        reset = _reset_peak()
        start, cpu_start = time.perf_counter(), time.process_time()
        tokens = token_edges(tm, WeightSettings(top_k=top_k, block=block, max_targets=n, n_tokens=10))
        de_runs.append({"features_per_dictionary": n, "seconds": round(time.perf_counter() - start, 2),
                        "cpu_seconds": round(time.process_time() - cpu_start, 2),
                        "rows": tokens.height, "peak_rss_mib": round(_peak_mib(), 1) if reset else None})
        _log({"stage": "synthetic de-embeddings + logit lens", **de_runs[-1]})
    (m1, u1), (m2, u2) = [(r["features_per_dictionary"], r["cpu_seconds"]) for r in de_runs[:2]]
    de_per = (u2 - u1) / (m2 - m1)
    de_fixed = u1 - de_per * m1
    return {
        "shape": PYTHIA, "setup_s": round(setup_s, 1), "rss_after_weights_mib": round(weights_mib, 1),
        "runs": runs,
        "extrapolated_full": {"targets": n_targets_total, "fixed_s": round(fixed, 1),
                              "per_target_ms": round(per_target / (PYTHIA["n_layers"] - 1) * 1000, 3),
                              "seconds": round(fixed + per_target * full_n, 0), "rows": rows_full},
        "memory_bound_mib": {"weights (model + transcoders)": round(weights_mib, 1),
                             f"one product d_sae x block={block} and its |.|": round(product_mib, 1),
                             "running top-k of one target layer": round(topk_mib, 1),
                             "finished rows of the full graph": round(table_mib, 1)},
        # a slope that is not positive means both points were fixed cost plus noise: no extrapolation
        "deembeddings_and_logit_lens": {"runs": de_runs, "fixed_s": round(de_fixed, 1),
                                        "extrapolated_full_s": round(de_fixed + de_per * full_n, 0) if de_per > 0 else None},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--targets", type=int, nargs=2, default=[256, 1024], metavar=("N1", "N2"),
                        help="features per target layer for the two synthetic runs (extrapolated to 32,768)")
    parser.add_argument("--de-targets", type=int, nargs=2, default=[64, 256], metavar=("M1", "M2"),
                        help="features per dictionary for the two de-embedding + logit-lens runs")
    parser.add_argument("--top-k", type=int, default=50)
    parser.add_argument("--block", type=int, default=1024)
    parser.add_argument("--skip-zoo", action="store_true")
    parser.add_argument("--skip-synthetic", action="store_true")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the report")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    results = {"threads": args.threads, "load_average": os.getloadavg()[0], "cpus": os.cpu_count()}
    if not args.skip_zoo:
        results["zoo"] = bench_zoo(args.threads)
        _log({"stage": "zoo", **results["zoo"]})
    if not args.skip_synthetic:
        results["synthetic"] = bench_synthetic(sorted(args.targets), sorted(args.de_targets), args.top_k, args.block)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"threads {results['threads']}, {results['cpus']} cpus, load average {results['load_average']:.1f}")
    if "zoo" in results:
        z = results["zoo"]
        print(f"toy zoo: `sfc weights build` {z['command_wall_s']} s wall, {z['command_cpu_s']} s CPU (build {z['build_s']} s "
              f"wall), peak RSS "
              f"{z['peak_rss_mib']} MiB; {z['feature_edges']} feature edges, {z['token_edges']} token edges")
    if "synthetic" in results:
        s = results["synthetic"]
        print(f"synthetic Pythia-70M shape (d_sae {PYTHIA['d_sae']}): weights in memory {s['rss_after_weights_mib']} MiB "
              f"(set-up {s['setup_s']} s)")
        for run in s["runs"]:
            print(f"  top-{args.top_k} inputs of the first {run['targets_per_layer']} features of each of 5 target layers: "
                  f"{run['seconds']} s wall, {run['cpu_seconds']} s CPU, {run['rows']} rows, peak RSS {run['peak_rss_mib']} MiB")
        e = s["extrapolated_full"]
        print(f"  extrapolated to all {e['targets']} features: {e['seconds']:.0f} CPU s on one thread "
              f"(fixed {e['fixed_s']} s + {e['per_target_ms']} ms per target feature), {e['rows']} rows")
        print("  memory bound (MiB): " + ", ".join(f"{k} {v}" for k, v in s["memory_bound_mib"].items()))
        d = s["deembeddings_and_logit_lens"]
        for run in d["runs"]:
            print(f"  de-embeddings (direct + through each head of layers <= its own) + logit lens, first {run['features_per_dictionary']} "
                  f"features per dictionary: {run['seconds']} s wall, {run['cpu_seconds']} s CPU ({run['rows']} rows, "
                  f"peak RSS {run['peak_rss_mib']} MiB)")
        if d["extrapolated_full_s"] is None:
            print("  no extrapolation: the two runs differ by less than the noise (use larger --de-targets)")
        else:
            print(f"  extrapolated to every feature: {d['extrapolated_full_s']:.0f} CPU s (fixed {d['fixed_s']} s)")


if __name__ == "__main__":
    main()
