"""Benchmark of circuit discovery: time, peak memory, size and agreement of attrib / ig / exact.

    .venv/bin/python benchmarks/bench_ingest.py [--task agreement_nounpp] [--n-examples 64] [--threads 1]
                                                [--stand-in | --zoo-dir DIR]

On the toy zoo when its artefacts are installed; otherwise (or with ``--stand-in``) on a stated stand-in of the
zoo's size: a random 3-layer HookedTransformer (d_model 128, d_mlp 512, 4 heads), random SAEs with 512
latents at all 10 sites, and 64 counterfactual pairs of 7–9 words. Each method runs in a fresh process so
that peak RSS is its own. Prints wall time, peak RSS, nodes and edges of each circuit, and the Spearman rank
correlation of attrib's and ig's node effects with exact's over every node with a non-zero exact effect and
over exact's top-100 nodes by |effect|. Targets (issue 3): ig Spearman >= 0.9 on the top 100; ig(10) within
15x attrib's time; peak RSS <= 4 GiB.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def stand_in(n_examples: int, *, n_layers: int = 3, d_model: int = 128, n_heads: int = 4, d_mlp: int = 512,
             d_dict: int = 512, n_ctx: int = 32):
    """A random model, dictionaries and task; by default of the zoo's size (see the module docstring).
    ``bench_real_shape.py`` asks for Pythia-70M's shape."""
    import torch
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    sys.path.insert(0, str(ROOT / "tests"))
    from sfc_graph.ingest.model import wrap
    from sfc_graph.ingest.tasks import Example, Task
    from test_ingest_helpers import build_dictionaries, build_tokenizer

    tokenizer = build_tokenizer()
    cfg = HookedTransformerConfig(n_layers=n_layers, d_model=d_model, d_head=d_model // n_heads, n_heads=n_heads,
                                  d_mlp=d_mlp, d_vocab=len(tokenizer), n_ctx=n_ctx, act_fn="gelu",
                                  normalization_type="LN", seed=0, default_prepend_bos=True)
    torch.manual_seed(0)
    model = HookedTransformer(cfg, tokenizer=tokenizer, move_to_device=False)
    handle = wrap(model, model_id=f"stand-in-{n_layers}x{d_model}")
    dictionaries = build_dictionaries(handle, d_dict=d_dict)
    rng = random.Random(0)
    nouns = [("dog", "dogs"), ("cat", "cats"), ("parent", "parents")]
    examples = []
    for _ in range(n_examples):
        singular, plural = rng.choice(nouns)
        other = rng.choice(["dog", "dogs", "cat", "cats"])
        adjectives = rng.sample(["big", "small"], rng.randint(0, 2))
        words = ["the", *adjectives, "{}", "near", "the", other]
        clean = " ".join(words).format(plural)
        patch = " ".join(words).format(singular)
        examples.append(Example(clean, "are", patch, "is"))
    task = Task("stand-in-agreement", tuple(examples), "generated")
    _calibrate_sparsity(handle, dictionaries, task, firing_rate=0.03)
    return handle, dictionaries, task


def _calibrate_sparsity(handle, dictionaries, task, *, firing_rate: float) -> None:
    """Set each random SAE's encoder bias so that a latent fires on about ``firing_rate`` of the task's tokens
    (L0 ≈ 15 of 512), as a trained SAE would; without it random codes are dense and exact patching explodes."""
    import torch
    from sfc_graph.ingest.tasks import tokenize_task

    tokenized = tokenize_task(task, handle)
    hooks = {site.hook for site in dictionaries.sites}
    xs = {hook: [] for hook in hooks}
    for batch in tokenized.batches(64, handle.device):
        _, cache = handle.model.run_with_cache(batch.clean, names_filter=lambda name: name in hooks)
        for hook in hooks:
            xs[hook].append(cache[hook].reshape(-1, handle.d_model))
    for site in dictionaries.sites:
        sae = dictionaries[site]
        x = torch.cat(xs[site.hook])
        pre = (x - sae.b_dec) @ sae.W_enc
        sae.b_enc = -torch.quantile(pre, 1 - firing_rate, dim=0)


def use_zoo_dir(path: str | None) -> None:
    """Point the zoo at another build (``sfc zoo build --out DIR``) for this process."""
    if path:
        from sfc_graph import zoo

        zoo.zoo_dir = lambda: Path(path)


def zoo_available() -> bool:
    try:
        from sfc_graph import zoo

        zoo.zoo_dir()
        return True
    except Exception:
        return False


def one_method(method: str, task: str, n_examples: int, use_stand_in: bool, out: Path) -> None:
    """Compute one circuit in this process and write figures + node effects to ``out``."""
    import torch

    torch.set_num_threads(torch.get_num_threads())
    from sfc_graph import naming
    from sfc_graph.ingest.compute import CircuitSettings, compute_circuit

    settings = CircuitSettings(method=method, n_examples=n_examples)
    if use_stand_in:
        handle, dictionaries, task_obj = stand_in(n_examples)
    else:
        from sfc_graph.ingest.dictionaries import load_dictionary_set
        from sfc_graph.ingest.model import load_model
        from sfc_graph.ingest.tasks import load_task

        handle = load_model("toy-zoo", device="cpu")
        dictionaries = load_dictionary_set(["toy-zoo"], n_layers=handle.n_layers, d_model=handle.d_model,
                                           model_id=handle.model_id)
        task_obj = load_task(task)
    started = time.perf_counter()
    circuit = compute_circuit(handle, dictionaries, task_obj, settings)
    seconds = time.perf_counter() - started
    # every node effect, not only the kept ones, so that ranks compare over all non-zero nodes
    effects = circuit.effects
    table = {}
    for site, values in effects.features.items():
        for index, value in enumerate(values.cpu().tolist()):
            table[naming.feature_id(site.name, index)] = value
        table[naming.error_id(site.name)] = float(effects.errors[site])
    figures = {
        "method": method, "seconds": seconds, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "nodes": circuit.nodes.height - 1, "edges": circuit.edges.height, "effects": table,
        "faithfulness": circuit.manifest["evaluation"], "model": circuit.manifest["model"],
    }
    out.write_text(json.dumps(figures))


def spearman(a: list[float], b: list[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="agreement_nounpp")
    parser.add_argument("--n-examples", type=int, default=64)
    parser.add_argument("--stand-in", action="store_true", help="use the stand-in model even if the zoo exists")
    parser.add_argument("--methods", default="attrib,ig,exact")
    parser.add_argument("--zoo-dir", help="a zoo built elsewhere (sfc zoo build --out DIR) instead of the shipped one")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--_one", help=argparse.SUPPRESS)
    parser.add_argument("--_out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    use_zoo_dir(args.zoo_dir)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    use_stand_in = args.stand_in or not zoo_available()
    if args._one:
        one_method(args._one, args.task, args.n_examples, use_stand_in, Path(args._out))
        return
    import torch

    where = "stand-in (random 3x128, SAEs 512, generated agreement task)" if use_stand_in else (
        f"toy zoo ({args.zoo_dir or 'shipped'})")
    print(f"model: {where}; task: {'stand-in-agreement' if use_stand_in else args.task}; "
          f"{args.n_examples} examples; CPU, {args.threads or torch.get_num_threads()} thread(s)")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.methods.split(","):
            out = Path(tmp) / f"{method}.json"
            command = [sys.executable, __file__, "--_one", method, "--_out", str(out), "--task", args.task,
                       "--n-examples", str(args.n_examples)] + (["--stand-in"] if use_stand_in else [])
            command += (["--zoo-dir", args.zoo_dir] if args.zoo_dir else []) + (
                ["--threads", str(args.threads)] if args.threads else [])
            subprocess.run(command, check=True)
            results[method] = json.loads(out.read_text())
    print(f"{'method':<8}{'wall s':>9}{'peak RSS MiB':>14}{'nodes':>8}{'edges':>9}")
    for method, r in results.items():
        print(f"{method:<8}{r['seconds']:>9.2f}{r['peak_rss_mib']:>14.0f}{r['nodes']:>8}{r['edges']:>9}")
    if "exact" in results:
        exact = results["exact"]["effects"]
        nonzero = [k for k, v in exact.items() if v != 0]
        top = sorted(nonzero, key=lambda k: -abs(exact[k]))[:100]
        for method in ("attrib", "ig"):
            if method not in results:
                continue
            est = results[method]["effects"]
            print(f"spearman {method} vs exact: all non-zero ({len(nonzero)}) "
                  f"{spearman([est[k] for k in nonzero], [exact[k] for k in nonzero]):.3f}; "
                  f"top-100 {spearman([est[k] for k in top], [exact[k] for k in top]):.3f}")
    if "ig" in results and "attrib" in results:
        print(f"ig / attrib time: {results['ig']['seconds'] / results['attrib']['seconds']:.1f}x")
    for method, r in results.items():
        rows = ", ".join(f"{e['node_threshold']:g}: {e['n_nodes']} nodes F={_fmt(e['faithfulness'])} "
                         f"C={_fmt(e['completeness'])}" for e in r["faithfulness"])
        print(f"evaluation {method}: {rows}")


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"


if __name__ == "__main__":
    main()
