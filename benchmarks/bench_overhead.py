"""Overhead benchmark: the engine's node and edge computation against the bare passes each method needs, timed
side by side in one process (issue 17).

    .venv/bin/python benchmarks/bench_overhead.py [--task ioi] [--n-examples 64] [--methods attrib,ig]
                                                  [--repeats 5] [--threads 1] [--zoo-dir DIR]

The bare passes are written here with plain torch and transformer_lens, independently of the engine, on the
same model, batches and kept nodes:

* ``attrib``: per batch, one clean forward pass and one backward pass to every site (plus, for tasks with
  counterfactuals, the forward pass on the patch prompts that gives ``Δa``);
* ``ig``: per batch, the clean and patch forward passes, then for every site ``steps`` forward + backward
  passes from that site on, steps stacked along the batch as the engine does (``max_rows`` rows a pass);
* ``edges``: per batch, one forward pass with every site cut into a leaf, then for every downstream site with
  kept nodes the batched vector–Jacobian products of its output, one cotangent per kept node (+1 for its error
  node), to the leaves of the upstream sites with kept nodes (chunked as the engine chunks).

The engine's time is its whole ``node effects`` and ``edges`` steps of :func:`compute_circuit` (everything the
step does: encoding, deltas, contractions, bookkeeping). Printed: medians over ``--repeats`` interleaved rounds
and engine ÷ bare, in CPU seconds of the process (``--wall`` for wall seconds: on a shared machine those
mostly measure the other users). Target: ≤ 1.5 for nodes and for edges. The dataset means (for evaluation / mean ablation)
and the evaluation are timed and printed too, outside the ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def clock() -> float:
    """CPU seconds of this process (the default) or wall seconds (``--wall``).

    On a shared machine wall time mostly measures the other users; with one thread the process's CPU time is
    the work done, and it is what the ratio should compare.
    """
    return time.perf_counter() if WALL else time.process_time()


WALL = False


class StepTimer:
    """A Progress (ingest/compute.py) that records how long each step took."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def step(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        started = clock()
        yield lambda n=1: None
        self.seconds[description.split(" (")[0]] = clock() - started


# ------------------------------------------------------------------------------------------ bare passes


@contextlib.contextmanager
def hooked(model, hooks):
    """Forward hooks on transformer_lens hook points, removed afterwards (only those points are touched)."""
    points = []
    try:
        for name, fn in hooks:
            point = model.hook_dict[name]
            point.add_hook(fn, dir="fwd")
            points.append(point)
        yield
    finally:
        for point in points:
            point.remove_hooks("fwd")


def capture(model, tokens, hooks: list[str], *, grad: bool):
    """Logits and the activation at each hook (in the graph with ``grad``)."""
    acts = {}

    def grab(x, hook):
        acts[hook.name] = x

    def leaf(x, hook):
        return x.detach().requires_grad_(True)

    names = sorted(set(hooks) | {f"blocks.{i}.hook_resid_pre" for i in range(model.cfg.n_layers)})
    extra = [("blocks.0.hook_resid_pre", leaf)] if grad else []
    import torch

    with torch.set_grad_enabled(grad), hooked(model, extra + [(n, grab) for n in names]):
        logits = model(tokens)
    return logits, acts


def start_layer(site) -> int:
    if site.kind == "embed":
        return 0
    return site.layer + 1 if site.kind == "resid" else site.layer


def bare_nodes(model, batches, metric, sites, method: str, steps: int, max_rows: int) -> None:
    import torch

    hooks = [s.hook for s in sites]
    for batch in batches:
        if batch.patch is not None:
            with torch.no_grad():
                _, patch_acts = capture(model, batch.patch, hooks, grad=False)
        if method == "attrib":
            logits, acts = capture(model, batch.clean, hooks, grad=True)
            torch.autograd.grad(metric(logits, batch.answers()).sum(), [acts[h] for h in hooks])
            continue
        with torch.no_grad():
            _, acts = capture(model, batch.clean, hooks, grad=False)
        b = batch.size
        per_pass = max(1, min(steps, max_rows // b))
        for site in sites:
            x0 = acts[site.hook]
            x1 = patch_acts[site.hook] if batch.patch is not None else torch.zeros_like(x0)
            start = start_layer(site)
            for first in range(0, steps, per_pass):
                n = min(steps, first + per_pass) - first
                alphas = ((torch.arange(first, first + n, dtype=x0.dtype) + 0.5) / steps).view(-1, 1, 1, 1)
                value = (x0 + alphas * (x1 - x0)).reshape(-1, *x0.shape[1:]).requires_grad_(True)
                with torch.enable_grad():
                    if site.kind in ("embed", "resid"):
                        logits = model(value, start_at_layer=start)
                    else:
                        base = acts[f"blocks.{start}.hook_resid_pre"].repeat(n, 1, 1)
                        with hooked(model, [(site.hook, lambda x, hook: value)]):
                            logits = model(base, start_at_layer=start)
                    torch.autograd.grad(metric(logits, batch.answers(repeat=n)).sum(), value)


def bare_edges(model, batches, sites, kept_counts: dict, chunk: int, max_elements: int) -> None:
    """``kept_counts[site]``: number of kept nodes of the site (features + its error node)."""
    import torch

    for batch in batches:
        pre, leaves = {}, {}

        def cut(x, hook):
            pre[hook.name] = x
            leaves[hook.name] = x.detach().requires_grad_(True)
            return leaves[hook.name]

        with torch.enable_grad(), hooked(model, [(s.hook, cut) for s in sites]):
            model(batch.clean)
        b, p = batch.clean.shape
        d = model.cfg.d_model
        for i, down in enumerate(sites):
            upstream = [s for s in sites[:i] if kept_counts.get(s)]
            if not kept_counts.get(down) or not upstream:
                continue
            rows = kept_counts[down]
            step = max(1, min(chunk, max_elements // (b * p * d)))
            for start in range(0, rows, step):
                n = min(rows, start + step) - start
                cotangent = torch.randn(n, b, p, d)
                torch.autograd.grad(pre[down.hook], [leaves[s.hook] for s in upstream], grad_outputs=cotangent,
                                    is_grads_batched=True, retain_graph=True, allow_unused=True)


# ------------------------------------------------------------------------------------------------ main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="ioi")
    parser.add_argument("--n-examples", type=int, default=64)
    parser.add_argument("--methods", default="attrib,ig")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--zoo-dir", help="a zoo built elsewhere (sfc zoo build --out DIR)")
    parser.add_argument("--wall", action="store_true", help="time wall seconds instead of CPU seconds")
    args = parser.parse_args()
    global WALL
    WALL = args.wall

    import torch

    torch.set_num_threads(args.threads)
    if args.zoo_dir:
        from sfc_graph import zoo

        zoo.zoo_dir = lambda: Path(args.zoo_dir)
    from sfc_graph.ingest.compute import CircuitSettings, compute_circuit
    from sfc_graph.ingest.dictionaries import load_dictionary_set
    from sfc_graph.ingest.edges import MAX_GRAD_ELEMENTS
    from sfc_graph.ingest.metrics import METRICS
    from sfc_graph.ingest.model import load_model
    from sfc_graph.ingest.tasks import load_task, tokenize_task

    handle = load_model("toy-zoo", device="cpu")
    dictionaries = load_dictionary_set(["toy-zoo"], n_layers=handle.n_layers, d_model=handle.d_model,
                                       model_id=handle.model_id)
    task = load_task(args.task).head(args.n_examples)
    model = handle.model
    sites = dictionaries.sites
    metric_name = "logit_diff" if task.has_counterfactuals else "neg_log_prob"
    metric = METRICS[metric_name]
    print(f"model {handle.model_id}; task {args.task}, {len(task.examples)} examples, metric {metric_name}; "
          f"{len(sites)} sites; CPU, {torch.get_num_threads()} thread(s); {args.repeats} interleaved rounds, medians "
          f"of {'wall' if WALL else 'process CPU'} seconds")

    rows = []
    for method in args.methods.split(","):
        settings = CircuitSettings(method=method, n_examples=args.n_examples, eval_thresholds=())
        batches = tokenize_task(task, handle).batches(settings.batch_size, handle.device)
        times: dict[str, list[float]] = {"engine nodes": [], "engine edges": [], "bare nodes": [],
                                         "bare edges": [], "means": []}
        for round_ in range(args.repeats + 1):  # round 0 warms up (allocator, lazy init) and is not counted
            timer = StepTimer()
            circuit = compute_circuit(handle, dictionaries, task, settings, progress=timer)
            effects = circuit.effects
            kept_counts = {
                s: int((effects.features[s].abs() >= settings.node_threshold).sum())
                + int(bool((effects.errors[s].abs() >= settings.node_threshold).any()))
                for s in sites
            }
            started = clock()
            bare_nodes(model, batches, metric, sites, method, settings.ig_steps, settings.max_rows)
            bare_node_seconds = clock() - started
            started = clock()
            bare_edges(model, batches, sites, kept_counts, settings.edge_chunk, MAX_GRAD_ELEMENTS)
            bare_edge_seconds = clock() - started
            if round_ == 0:
                continue
            times["engine nodes"].append(timer.seconds["node effects"])
            times["engine edges"].append(timer.seconds["edges"])
            times["means"].append(timer.seconds.get("site means", 0.0))
            times["bare nodes"].append(bare_node_seconds)
            times["bare edges"].append(bare_edge_seconds)
            print(f"  {method} round {round_}: " + ", ".join(f"{k} {v[-1]:.3f}" for k, v in times.items()),
                  file=sys.stderr, flush=True)
        med = {k: statistics.median(v) for k, v in times.items()}
        kept = sum(kept_counts.values())
        rows.append((method, med, kept, circuit.edges.height))

    print()
    print(f"{'method':<8}{'part':<7}{'engine s':>10}{'bare s':>9}{'engine ÷ bare':>15}   kept nodes / edges")
    for method, med, kept, n_edges in rows:
        for part in ("nodes", "edges"):
            ratio = med[f"engine {part}"] / med[f"bare {part}"]
            print(f"{method:<8}{part:<7}{med[f'engine {part}']:>10.3f}{med[f'bare {part}']:>9.3f}{ratio:>14.2f}x"
                  f"   {kept} / {n_edges}")
        print(f"{method:<8}{'means':<7}{med['means']:>10.3f}  (dataset means, outside the ratio)")


if __name__ == "__main__":
    main()
