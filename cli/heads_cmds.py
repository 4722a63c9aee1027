"""``sfc heads``: attention-head circuits (discrete-SAE codes, O'Neill & Bui 2024; head attribution and exact
patching as baselines) written as bundles of ``head`` nodes, and their ROC AUC against exact patching."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click
from sfc_graph.cli.app import CONTEXT_SETTINGS
from sfc_graph.cli.options import device_option, quiet_option, threads_option

# Help for every HeadSettings field; the options themselves are generated from the dataclass, so that the
# settings are declared once (tests/test_heads_cli.py checks that every field has an option).
SETTING_HELP = {
    "seed": "Seed of the SAE's initialisation, its training prompts and the abc negatives.",
    "n_examples": "Use the first N examples of the task (N positives and N negatives for discrete-sae).",
    "negatives": "discrete-sae negatives: auto (abc for ioi, else the task's counterfactual prompts), "
                 "counterfactual or abc.",
    "position": "discrete-sae: a head's output per prompt, averaged over positions (as published) or at the last.",
    "n_sae_examples": "Prompts (positives and negatives together) the SAE is trained on.",
    "n_latents": "SAE latents.",
    "l1": "SAE sparsity penalty λ (loss = MSE + λ · mean ‖f‖₁).",
    "lr": "Adam learning rate of the SAE.",
    "epochs": "Full-batch SAE training epochs.",
    "decoder_norm": "SAE decoder constraint: unit-norm atoms, or unit-norm rows as the published code's layer does.",
    "normalise": "Divide code counts by the number of distinct codes (code pairs for edges).",
    "edge_aggregation": "How edge scores rank heads: top-pairs (as published) or sum.",
    "edge_top_fraction": "top-pairs: the fraction of ordered head pairs whose endpoints are counted.",
    "edge_floor": "Keep head → head edges whose score is above this.",
    "patch": "eap/exact: the patch of a head's output: counterfactual prompt or per-position mean.",
    "batch_size": "Prompts per forward pass.",
}
_CHOICES = {"negatives": ("auto", "counterfactual", "abc"), "position": ("mean", "last"), "decoder_norm": ("atoms", "rows"), "edge_aggregation": ("top-pairs", "sum"),
            "patch": ("counterfactual", "mean")}


def settings_options(func):
    """One ``--option`` per HeadSettings field (except ``method``, given as its own option)."""
    from sfc_graph.ingest.heads.settings import HeadSettings

    for field in reversed(dataclasses.fields(HeadSettings)):
        if field.name == "method":
            continue
        flag = "--" + field.name.replace("_", "-")
        if field.type in ("bool", bool):
            func = click.option(flag + "/--no-" + flag[2:], field.name, default=field.default, show_default=True,
                                help=SETTING_HELP[field.name])(func)
            continue
        kind = {"int": int, "float": float}.get(str(field.type), str)
        if field.name in _CHOICES:
            kind = click.Choice(_CHOICES[field.name])
        func = click.option(flag, field.name, type=kind, default=field.default, show_default=True,
                            help=SETTING_HELP[field.name])(func)
    return func


@click.group(context_settings=CONTEXT_SETTINGS)
def heads() -> None:
    """Attention-head circuits: discrete SAE codes (O'Neill & Bui 2024) and patching baselines."""


@heads.command(context_settings=CONTEXT_SETTINGS)
@click.option("--model", "model_spec", default="toy-zoo", show_default=True, metavar="M",
              help="toy-zoo, a checkpoint directory, or a transformer_lens model name.")
@click.option("--task", "task_spec", required=True, metavar="T", help="A zoo task name or a JSONL file.")
@click.option("--method", type=click.Choice(["discrete-sae", "eap", "exact"]), default="discrete-sae",
              show_default=True, help="discrete-sae codes, head attribution patching, or exact head patching.")
@settings_options
@device_option()
@threads_option
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), metavar="BUNDLE_DIR")
@click.option("--overwrite", is_flag=True, help="Replace an existing bundle at --out.")
@quiet_option
def compute(model_spec, task_spec, method, device, threads, out, overwrite, quiet, **fields) -> None:
    """Score every attention head on a task and write a head circuit bundle.

    \b
    Examples:
      sfc heads compute --task ioi --method discrete-sae --out bundles/ioi-heads
      sfc heads compute --task ioi --method exact --out bundles/ioi-heads-exact
    """
    from sfc_graph.ingest.heads.compute import HeadSettings, compute_head_bundle
    from sfc_graph.threads import set_threads

    set_threads(threads)
    settings = HeadSettings(method=method, **fields)
    bundle = compute_head_bundle(model=model_spec, task=task_spec, out=out, settings=settings, device=device,
                                 overwrite=overwrite)
    if quiet:
        click.echo(str(out))
        return
    manifest, nodes = bundle.manifest, bundle.nodes.filter(bundle.nodes["kind"] == "head")
    click.echo(f"wrote {bundle.path}")
    click.echo(f"  circuit {manifest['circuit_id']}  ({manifest['method']}, {nodes.height} heads, "
               f"{bundle.edges.height} edges, {manifest['compute_seconds']:.2f} s)")
    top = nodes.with_columns(nodes["effect"].abs().alias("_abs")).sort("_abs", descending=True).head(5)
    click.echo("  top heads: " + ", ".join(f"{r['node_id']} {r['effect']:+.3g}" for r in top.iter_rows(named=True)))


@heads.command(context_settings=CONTEXT_SETTINGS)
@click.option("--model", "model_spec", default="toy-zoo", show_default=True, metavar="M")
@click.option("--task", "task_spec", required=True, metavar="T", help="A zoo task name or a JSONL file.")
@click.option("--patch", type=click.Choice(["counterfactual", "mean"]), default="counterfactual",
              show_default=True, help="How the ground truth patches each head.")
@click.option("--n-examples", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--threshold", type=click.FloatRange(min=0), default=0.1, show_default=True,
              help="A head is in the true circuit when |effect| >= this × |m(clean) − m(patch)|.")
@device_option()
@threads_option
@click.argument("bundles", nargs=-1, type=click.Path(file_okay=False, path_type=Path), metavar="BUNDLE...")
def auc(model_spec, task_spec, patch, n_examples, threshold, device, threads, bundles) -> None:
    """ROC AUC of head circuit bundles against the exact-patching ground truth of their task.

    \b
    Example:
      sfc heads auc --task ioi bundles/ioi-heads bundles/ioi-heads-eap
    """
    import numpy as np

    from sfc_graph.bundle import read_bundle
    from sfc_graph.errors import BundleError
    from sfc_graph.ingest.heads.evaluation import GroundTruthSettings, ground_truth, roc_auc
    from sfc_graph.ingest.model import load_model
    from sfc_graph.ingest.tasks import load_task
    from sfc_graph.threads import set_threads

    set_threads(threads)
    read = [read_bundle(path) for path in bundles]  # every bundle checked before the slow part
    handle = load_model(model_spec, device=device)
    task = load_task(task_spec)
    for bundle in read:
        if bundle.task != task.name or bundle.model != handle.model_id:
            raise BundleError(f"{bundle.path}: a circuit of task {bundle.task!r} on {bundle.model!r}, but the ground "
                              f"truth is for task {task.name!r} on {handle.model_id!r}")
    truth = ground_truth(handle, task, GroundTruthSettings(patch=patch, n_examples=n_examples, threshold=threshold))
    n_heads = truth.effects.size
    click.echo(f"ground truth: {int(truth.in_circuit.sum())} of {n_heads} heads with |effect| >= "
               f"{threshold:g} × {truth.whole_effect:.3f} ({patch} patch, {n_examples} examples)")
    for bundle in read:
        heads = bundle.nodes.filter(bundle.nodes["kind"] == "head").sort("layer", "index")
        if heads.height != n_heads:
            raise BundleError(f"{bundle.path}: has {heads.height} head nodes but the model has {n_heads} heads")
        scores = heads["effect"].to_numpy()
        ranking = scores if bundle.manifest["method"] == "discrete-sae" else np.abs(scores)
        line = f"  {bundle.path}  {bundle.manifest['method']:<13} node AUC {roc_auc(truth.in_circuit, ranking):.3f}"
        if "edge_score" in heads.columns:
            line += f"  edge AUC {roc_auc(truth.in_circuit, heads['edge_score'].to_numpy()):.3f}"
        click.echo(line)
