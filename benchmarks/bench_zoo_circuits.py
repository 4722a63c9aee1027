"""How far the zoo's circuits are from the saturated regime: the closing figures of issue 9.

    .venv/bin/python benchmarks/bench_zoo_circuits.py [--tasks agreement_simple,agreement_nounpp,agreement_rc,ioi]
        [--n-examples 64] [--exact-examples 64] [--threads 2] [--zoo-dir DIR] [--json OUT]

Per task, with the shipped zoo and its SAEs:

* the default ``ig`` circuit (64 examples, node threshold 0.1): ``n_nodes``, faithfulness and completeness
  under per-template, per-position mean ablation (the engine's evaluation);
* the node effects of ``--method exact`` and ``--method ig`` (every node, i.e. node threshold 0): the
  Spearman correlation between them, over the nodes that are non-zero in either (nodes that never fire
  on the task are exactly zero in both and would only add ties), signed and of absolute values;
* per site, additivity = Σ single-node exact effects (every feature and the error node, summed over
  positions) ÷ the effect of patching the whole site at once. The whole-site effect is computed here with
  plain transformer_lens hooks on the unspliced model (clean run with the site's activation taken from the
  counterfactual run), independently of the engine.

Targets (issue 9): faithfulness ≥ 0.7 with ≤ 200 nodes on the agreement tasks; Spearman ≥ 0.8; additivity
≥ 0.5 at every site.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

TASKS = ("agreement_simple", "agreement_nounpp", "agreement_rc", "ioi")


def use_zoo_dir(path: str | None) -> None:
    if path:
        from sfc_graph import zoo

        zoo.zoo_dir = lambda: Path(path)


def flat_effects(effects) -> tuple[np.ndarray, list[str]]:
    values, names = [], []
    for site in effects.features:  # the engine's site order, the same in both runs
        f = effects.features[site].detach().double().flatten().cpu().numpy()
        values += list(f)
        names += [f"{site.name}/{i}" for i in range(len(f))]
        values.append(float(effects.errors[site]))
        names.append(f"{site.name}/error")
    return np.array(values), names


def whole_site_effects(handle, task, sites) -> dict[str, float]:
    """Mean over examples of m(clean with the whole site patched) - m(clean), plain hooks, logit difference."""
    from sfc_graph.ingest.tasks import tokenize_task

    model = handle.model
    totals = {site.name: 0.0 for site in sites}
    n = 0
    for batch in tokenize_task(task, handle).batches(64, handle.device):
        rows = torch.arange(batch.size)

        def metric(logits):
            last = logits[:, -1]
            return last[rows, batch.clean_answer] - last[rows, batch.patch_answer]

        with torch.no_grad():
            clean = metric(model(batch.clean))
            _, cache = model.run_with_cache(batch.patch, names_filter=lambda name: name in {s.hook for s in sites})
            for site in sites:
                patched = model.run_with_hooks(batch.clean, fwd_hooks=[(site.hook, lambda act, hook, s=site: cache[s.hook])])
                totals[site.name] += float((metric(patched) - clean).sum())
        n += batch.size
    return {name: total / n for name, total in totals.items()}


def measure(task_name: str, n_examples: int, exact_examples: int, handle, dictionaries,
            circuits_only: bool = False) -> dict:
    from sfc_graph.ingest.compute import CircuitSettings, compute_circuit
    from sfc_graph.ingest.tasks import load_task

    task = load_task(task_name)
    out: dict = {"task": task_name}
    started = time.perf_counter()
    default = compute_circuit(handle, dictionaries, task, CircuitSettings(n_examples=n_examples))
    row = next(r for r in default.evaluation if abs(r["node_threshold"] - 0.1) < 1e-9)
    out.update(n_nodes=row["n_nodes"], faithfulness=row["faithfulness"], completeness=row["completeness"],
               metric_model=row["metric_model"], metric_empty=row["metric_empty"],
               ig_seconds=round(time.perf_counter() - started, 1))
    out["evaluation"] = [{k: r[k] for k in ("node_threshold", "n_nodes", "faithfulness", "completeness")}
                         for r in default.evaluation]
    small = [r for r in out["evaluation"] if r["n_nodes"] <= 200 and r["faithfulness"] is not None]
    out["best_under_200"] = max(small, key=lambda r: r["faithfulness"]) if small else None
    if circuits_only:
        return out
    # node threshold above every effect: no edges to compute; Circuit.effects keeps every node's effect,
    # which is what a bundle at node threshold 0 lists
    far = 1e9
    started = time.perf_counter()
    ig = compute_circuit(handle, dictionaries, task, CircuitSettings(method="ig", n_examples=exact_examples,
                                                                      node_threshold=far, eval_thresholds=()))
    exact = compute_circuit(handle, dictionaries, task, CircuitSettings(method="exact", n_examples=exact_examples,
                                                                         node_threshold=far, eval_thresholds=()))
    out["exact_seconds"] = round(time.perf_counter() - started, 1)
    ig_v, names = flat_effects(ig.effects)
    ex_v, names_ex = flat_effects(exact.effects)
    assert names == names_ex
    live = (ig_v != 0) | (ex_v != 0)
    out["n_live_nodes"] = int(live.sum())
    out["spearman"] = float(spearmanr(ig_v[live], ex_v[live]).statistic)
    out["spearman_abs"] = float(spearmanr(np.abs(ig_v[live]), np.abs(ex_v[live])).statistic)
    sites = list(exact.effects.features)
    whole = whole_site_effects(handle, task.head(exact_examples), sites)
    additivity = {}
    for site in sites:
        single = float(exact.effects.features[site].sum() + exact.effects.errors[site])
        additivity[site.name] = {"sum_single": single, "whole_site": whole[site.name],
                                 "ratio": single / whole[site.name] if abs(whole[site.name]) > 1e-9 else None}
    out["additivity"] = additivity
    ratios = [a["ratio"] for a in additivity.values() if a["ratio"] is not None]
    out["additivity_min"] = min(ratios) if ratios else None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--n-examples", type=int, default=64, help="examples of the default ig circuit")
    parser.add_argument("--exact-examples", type=int, default=64, help="examples of the exact/ig comparison")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--zoo-dir", help="a zoo built elsewhere (sfc zoo build --out DIR) instead of the shipped one")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--circuits-only", action="store_true", help="only the default ig circuits (no exact)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    use_zoo_dir(args.zoo_dir)
    from sfc_graph import zoo
    from sfc_graph.ingest.dictionaries import load_dictionary_set
    from sfc_graph.ingest.model import load_model

    handle = load_model("toy-zoo", device="cpu")
    dictionaries = load_dictionary_set(["toy-zoo"], n_layers=handle.n_layers, d_model=handle.d_model,
                                       model_id=handle.model_id)
    print(f"zoo {zoo.ZOO_NAME} at {zoo.zoo_dir()}; {args.threads} thread(s)")
    results = []
    for task in args.tasks.split(","):
        r = measure(task, args.n_examples, args.exact_examples, handle, dictionaries, args.circuits_only)
        results.append(r)
        agreement = task.startswith("agreement")
        faith_ok = r["faithfulness"] is not None and r["faithfulness"] >= 0.7 and r["n_nodes"] <= 200
        best = r["best_under_200"]
        if best is not None and best["faithfulness"] >= 0.7:
            faith_ok = True
        print(f"\n{task}: ig circuit (threshold 0.1, {args.n_examples} examples): n_nodes {r['n_nodes']}, "
              f"faithfulness {r['faithfulness']:.3f}, completeness {r['completeness']:.3f}"
              + (f"  [target faithfulness>=0.7 with <=200 nodes: {'met' if faith_ok else 'MISSED'}]" if agreement else ""))
        print("  by node threshold: " + "  ".join(
            f"{e['node_threshold']:g}: {e['n_nodes']} nodes, F {e['faithfulness']:.2f}, C {e['completeness']:.2f}"
            for e in r["evaluation"]))
        if best is not None:
            print(f"  most faithful circuit with <= 200 nodes: threshold {best['node_threshold']:g}, "
                  f"{best['n_nodes']} nodes, faithfulness {best['faithfulness']:.3f}")
        if args.circuits_only:
            continue
        print(f"  ig vs exact ({args.exact_examples} examples, {r['n_live_nodes']} non-zero nodes): Spearman "
              f"{r['spearman']:.3f} (of |effects| {r['spearman_abs']:.3f})  "
              f"[target >=0.8: {'met' if r['spearman'] >= 0.8 else 'MISSED'}]")
        cells = "  ".join(f"{name} {a['ratio']:.2f}" if a["ratio"] is not None else f"{name} n/a"
                          for name, a in r["additivity"].items())
        print(f"  additivity Σ single exact / whole-site patch: {cells}")
        print(f"  min additivity {r['additivity_min']:.2f}  [target >=0.5 at every site: "
              f"{'met' if r['additivity_min'] is not None and r['additivity_min'] >= 0.5 else 'MISSED'}]")
        print(f"  ({r['ig_seconds']} s default circuit, {r['exact_seconds']} s ig+exact at threshold 0)")
        sys.stdout.flush()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
