"""The engine at a real model's shape (issue 14): a random model shaped like Pythia-70M with random SAEs at
every site, ``attrib`` and ``ig`` circuits with edges, on CPU — wall time and peak memory as d_sae grows.

    .venv/bin/python benchmarks/bench_real_shape.py [--d-sae 8192 16384 32768] [--methods attrib ig]
                                                    [--n-examples 16] [--threads 2]

The model: 6 layers, d_model 512, 8 heads of 64, d_mlp 2048 (Pythia-70M's shape; its 50k vocabulary is replaced by
the test tokenizer's, which only changes the unembedding's cost), random weights; an SAE of ``d_sae`` latents at
each of its 19 sites (embed, attn/mlp/resid of every layer), encoder biases set so that a latent fires on ~3% of
tokens (as a trained SAE's do; random SAEs are dense otherwise); 16 counterfactual pairs of 7-9 words. Each
(d_sae, method) runs in a fresh process, so that its peak RSS is its own; the dictionaries' weights alone are
19 x 2 x 512 x d_sae floats (2.5 GB at 32k), printed beside it, so that the engine's own memory is the rest.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build(d_sae: int, n_examples: int):
    """Pythia-70M's shape: 6 layers, d_model 512, 8 heads of 64, d_mlp 2048 (bench_ingest's stand-in builder)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_ingest import stand_in

    return stand_in(n_examples, n_layers=6, d_model=512, n_heads=8, d_mlp=2048, d_dict=d_sae, n_ctx=64)


def child(d_sae: int, method: str, n_examples: int, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    from sfc_graph.ingest.compute import CircuitSettings, compute_circuit

    t0 = time.perf_counter()
    handle, dictionaries, task = build(d_sae, n_examples)
    built = time.perf_counter() - t0
    rss_built = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    settings = CircuitSettings(method=method, n_examples=n_examples, eval_thresholds=())
    t0 = time.perf_counter()
    circuit = compute_circuit(handle, dictionaries, task, settings)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"d_sae": d_sae, "method": method, "build_s": built, "compute_s": seconds,
                      "rss_after_build_mib": rss_built, "peak_rss_mib": peak, "nodes": circuit.nodes.height,
                      "edges": circuit.edges.height}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--d-sae", type=int, nargs="+", default=[8192, 16384, 32768])
    parser.add_argument("--methods", nargs="+", default=["attrib", "ig"])
    parser.add_argument("--n-examples", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", nargs=2, metavar=("D_SAE", "METHOD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(int(args.child[0]), args.child[1], args.n_examples, args.threads)
        return
    print(f"{'d_sae':>7} {'method':>7} {'compute s':>10} {'peak RSS MiB':>13} {'SAE weights MiB':>16} "
          f"{'engine MiB':>11} {'nodes':>6} {'edges':>7}")
    for d_sae in args.d_sae:
        for method in args.methods:
            command = [sys.executable, __file__, "--child", str(d_sae), method, "--n-examples", str(args.n_examples),
                       "--threads", str(args.threads)]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                print(f"{d_sae:>7} {method:>7}  failed: {done.stderr.strip().splitlines()[-1:]}")
                continue
            result = json.loads(done.stdout.strip().splitlines()[-1])
            peak = result["peak_rss_mib"]
            weights = 19 * 2 * 512 * d_sae * 4 / 2**20
            print(f"{d_sae:>7} {method:>7} {result['compute_s']:>10.1f} {peak:>13,.0f} {weights:>16,.0f} "
                  f"{peak - result['rss_after_build_mib']:>11,.0f} {result['nodes']:>6} {result['edges']:>7}",
                  flush=True)


if __name__ == "__main__":
    main()
