"""``sfc shift``: fix a classifier's spurious cue by ablating features chosen from its circuit (SHIFT, seed 000)."""

from __future__ import annotations

from pathlib import Path

import click
from sfc_graph.cli.app import CONTEXT_SETTINGS
from sfc_graph.cli.options import (
    device_option,
    param_option,
    parse_param_value,
    quiet_option,
    store_option,
    threads_option,
)
from sfc_graph.cli.progress import progress_for

# Marks et al. 2024, Table (Bias in Bios, Pythia-70M), for reading ours against.
PAPER = {
    "original": (61.9, 87.4, 24.4), "CBP": (83.3, 60.1, 67.7), "SHIFT": (88.5, 54.0, 76.0),
    "SHIFT + retrain": (93.1, 52.0, 89.0), "neuron skyline": (75.5, 73.2, 41.5),
    "feature skyline": (88.5, 54.3, 62.9), "oracle": (93.0, 49.4, 91.9),
}


@click.command(context_settings=CONTEXT_SETTINGS)
@click.option("--model", "model_spec", default="toy-zoo", show_default=True, metavar="M",
              help="toy-zoo, a checkpoint directory, or a transformer_lens model name.")
@click.option("--dict", "dict_specs", multiple=True, default=("toy-zoo",), show_default=True, metavar="SPEC",
              help="toy-zoo, a directory with one sub-directory per site, or SITE=PATH (repeatable).")
@click.option("--bios", "bios_spec", default="toy-zoo", show_default=True, metavar="DIR",
              help="toy-zoo, or a directory with ambiguous.jsonl and balanced.jsonl.")
@store_option
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="Where the circuit bundle, shift.json and report.md go.")
@click.option("--features-from", "features", default=None, metavar="SOURCE",
              help="The human judge: a file of feature ids, a .cypher file, a named query, or Cypher text "
                   "returning a 'feature' column ($circuit is the classifier's circuit). Default: the "
                   "automatic judge (spurious when a feature separates gender better than profession).")
@param_option
@click.option("--margin", type=float, default=0.0, show_default=True,
              help="Automatic judge: spurious when gender separation exceeds profession separation by this.")
@click.option("--min-separation", type=click.FloatRange(0, 1), default=0.2, show_default=True,
              help="Automatic judge: a spurious feature separates gender at least this well (|2·AUROC − 1|).")
@click.option("--retrain/--no-retrain", default=True, show_default=True,
              help="Also retrain the probe with the features ablated (SHIFT + retrain).")
@click.option("--skylines/--no-skylines", default=True, show_default=True,
              help="Also measure the neuron and feature skylines (they use gender labels).")
@click.option("--skyline-k", type=click.IntRange(min=1), default=None,
              help="Nodes each skyline ablates (default: as many features as SHIFT ablates).")
@click.option("--fill", type=click.Choice(["zero", "mean"]), default="zero", show_default=True,
              help="Ablated features are set to zero (the paper) or to their mean over the ambiguous "
                   "training bios' tokens.")
@click.option("--method", type=click.Choice(["attrib", "ig"]), default="ig", show_default=True)
@click.option("--ig-steps", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--node-threshold", type=click.FloatRange(min=0), default=0.1, show_default=True,
              help="The circuit keeps nodes with |effect| at least this (units of -log C(y|x)).")
@click.option("--edge-threshold", type=click.FloatRange(min=0), default=0.01, show_default=True)
@click.option("--ablation", type=click.Choice(["zero", "mean"]), default="zero", show_default=True,
              help="The patch of the attribution (the paper: zero).")
@click.option("--n-examples", type=click.IntRange(min=1), default=128, show_default=True,
              help="Ambiguous training bios the circuit is computed on.")
@click.option("--probe-l2", type=click.FloatRange(min=0), default=1e-3, show_default=True)
@device_option()
@threads_option
@click.option("--overwrite", is_flag=True, help="Replace the circuit bundle in --out.")
@quiet_option
def shift(model_spec, dict_specs, bios_spec, store, out, features, params, margin, min_separation, retrain, skylines, skyline_k,
          fill, method, ig_steps, node_threshold, edge_threshold, ablation, n_examples, probe_l2, device, threads,
          overwrite, quiet) -> None:
    """Train a probe on bios where gender predicts the profession, compute its circuit, ablate the features
    judged spurious, and print the paper's table (accuracies on the balanced bios).

    \b
    Rows (as in Marks et al. 2024): original; SHIFT (spurious features zeroed, SAE errors kept);
    SHIFT + retrain; neuron / feature skyline (top-k gender nodes by attribution, with gender labels);
    oracle (a probe trained on balanced bios). The run is stored as an Intervention node linked to the
    circuit and to every ablated feature: `sfc query shift-ablations`.

    \b
    Examples:
      sfc shift --store st --out runs/shift
      sfc shift --store st --out runs/shift-human --features-from judged.txt
      sfc shift --store st --out runs/q --features-from top-nodes -p k 10 -p kind feature
    """
    from sfc_graph.ingest.compute import CircuitSettings
    from sfc_graph.ingest.dictionaries import load_dictionary_set
    from sfc_graph.ingest.model import load_model
    from sfc_graph.ingest.shift import ShiftData, ShiftExperiment, ShiftSettings, load_bios, run_shift
    from sfc_graph.store import open_store
    from sfc_graph.threads import set_threads

    set_threads(threads)
    progress = progress_for(quiet)
    settings = ShiftSettings(
        circuit=CircuitSettings(method=method, ig_steps=ig_steps, ablation=ablation, metric="neg_log_prob",
                                node_threshold=node_threshold, edge_threshold=edge_threshold,
                                n_examples=n_examples, eval_thresholds=()),
        probe_l2=probe_l2, skyline_k=skyline_k, fill=fill,
    )
    data = ShiftData(load_bios(bios_spec, "ambiguous"), load_bios(bios_spec, "balanced"))
    handle = load_model(model_spec, device=device)
    dictionaries = load_dictionary_set(list(dict_specs), n_layers=handle.n_layers, d_model=handle.d_model,
                                       model_id=handle.model_id)
    experiment = ShiftExperiment(handle, dictionaries, data, settings)
    query_params = {name: parse_param_value(value) for name, value in params}
    out.mkdir(parents=True, exist_ok=True)
    with open_store(store) as circuit_store:
        result = run_shift(experiment, store=circuit_store, out=out, features=features, query_params=query_params,
                           margin=margin, min_separation=min_separation, retrain=retrain, skylines=skylines, overwrite=overwrite,
                           progress=progress)
    report = render_report(result, data.classes, data.aligned)
    (out / "report.md").write_text(report, encoding="utf-8")
    click.echo(report)


def render_report(result, classes, aligned) -> str:
    lines = [
        f"SHIFT on circuit {result.circuit_id}",
        f"classes {' / '.join(classes)}; in the ambiguous bios "
        + ", ".join(f"{g} ↔ {p}" for g, p in sorted(aligned.items())),
        "",
        "accuracy on the balanced test bios (%)       ours                      paper (Pythia-70M)",
        f"{'method':<18} {'ablated':>7} {'profession↑':>11} {'gender↓':>8} {'worst↑':>7}   "
        f"{'prof':>5} {'gender':>6} {'worst':>5}",
    ]
    for row in result.rows:
        a = row.accuracies
        paper = PAPER.get(row.method)
        ref = f"{paper[0]:>5.1f} {paper[1]:>6.1f} {paper[2]:>5.1f}" if paper else ""
        ablated = "" if row.n_ablated is None else str(row.n_ablated)
        lines.append(f"{row.method:<18} {ablated:>7} {100 * a.profession:>11.1f} {100 * a.gender:>8.1f} "
                     f"{100 * a.worst_group:>7.1f}   {ref}")
    n_judged = len(result.judgements)
    lines += ["", f"judged {n_judged} feature(s); ablated {len(result.ablated)} "
                  f"({result.judgements[0].judge if result.judgements else 'auto'} judge)"]
    for ref in result.ablated:
        note = result.feature_notes.get(ref.feature_id, {})
        lines.append(
            f"  {ref.site.name}/{ref.latent:<6} gender sep {note.get('gender_separation', float('nan')):.2f}  "
            f"profession sep {note.get('profession_separation', float('nan')):.2f}  "
            f"top tokens {', '.join(map(str, note.get('top_tokens', [])))}  "
            f"logit lens {', '.join(map(str, note.get('logit_lens', [])))}"
        )
    if result.intervention_id:
        lines += ["", f"intervention {result.intervention_id} stored (sfc query shift-ablations)"]
    lines.append(f"circuit bundle {result.bundle_path}")
    return "\n".join(lines) + "\n"
