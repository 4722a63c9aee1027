"""``sfc ingest``: compute sparse feature circuits and write them as bundles (``compute``), or run a job
of many circuits, sharded, and load them into a store (``run``)."""

from __future__ import annotations

from pathlib import Path

import click
from sfc_graph.cli.app import CONTEXT_SETTINGS
from sfc_graph.cli.options import device_option, quiet_option, store_option, threads_option
from sfc_graph.cli.progress import progress_for


@click.group(context_settings=CONTEXT_SETTINGS)
def ingest() -> None:
    """Compute sparse feature circuits (Marks et al. 2024) and write them as bundles."""


@ingest.command(context_settings=CONTEXT_SETTINGS)
@click.option("--model", "model_spec", required=True, metavar="M",
              help="toy-zoo, a checkpoint directory, or a transformer_lens model name.")
@click.option("--dict", "dict_specs", required=True, multiple=True, metavar="SPEC",
              help="toy-zoo, a directory with one sub-directory per site, or SITE=PATH (repeatable).")
@click.option("--task", "task_spec", required=True, metavar="T", help="A zoo task name or a JSONL file.")
@click.option("--method", type=click.Choice(["attrib", "ig", "exact"]), default="ig", show_default=True,
              help="Node effects by attribution patching, integrated gradients, or activation patching.")
@click.option("--ig-steps", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--node-threshold", type=click.FloatRange(min=0), default=0.1, show_default=True,
              help="Keep nodes with |effect| at least this (in units of the metric).")
@click.option("--edge-threshold", type=click.FloatRange(min=0), default=0.01, show_default=True,
              help="Keep edges with |weight| at least this.")
@click.option("--aggregation", type=click.Choice(["sum", "none"]), default="sum", show_default=True,
              help="sum: over positions (mean over examples); none: one node per position.")
@click.option("--metric", type=click.Choice(["logit_diff", "neg_log_prob"]), default=None,
              help="Default: logit_diff with counterfactuals, neg_log_prob without.")
@click.option("--ablation", type=click.Choice(["mean", "zero"]), default="mean", show_default=True,
              help="The patch for tasks without counterfactuals.")
@click.option("--eval-thresholds", default="0.01,0.03,0.1,0.3,1.0", show_default=True, metavar="T1,T2,…",
              help="Node thresholds at which faithfulness and completeness are measured ('' for none).")
@click.option("--n-examples", type=click.IntRange(min=1), default=64, show_default=True,
              help="Use the first N examples of the task.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@device_option()
@threads_option
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), metavar="BUNDLE_DIR")
@click.option("--overwrite", is_flag=True, help="Replace an existing bundle at --out.")
@quiet_option
def compute(model_spec, dict_specs, task_spec, method, ig_steps, node_threshold, edge_threshold, aggregation,
            metric, ablation, eval_thresholds, n_examples, batch_size, device, threads, out, overwrite, quiet) -> None:
    """Compute one circuit and write it as a bundle directory.

    \b
    Example:
      sfc ingest compute --model toy-zoo --dict toy-zoo --task agreement_nounpp --out bundles/nounpp
    """
    from sfc_graph.ingest.compute import CircuitSettings, compute_bundle

    _set_threads(threads)
    settings = CircuitSettings(
        method=method, ig_steps=ig_steps, node_threshold=node_threshold, edge_threshold=edge_threshold,
        aggregation=aggregation, n_examples=n_examples, metric=metric, ablation=ablation,
        eval_thresholds=_parse_thresholds(eval_thresholds), batch_size=batch_size,
    )
    bundle = compute_bundle(
        model=model_spec, dictionaries=list(dict_specs), task=task_spec, out=out, settings=settings,
        device=device, overwrite=overwrite, progress=progress_for(quiet),
    )
    if quiet:
        click.echo(str(out))
        return
    _summary(bundle)


@ingest.command(context_settings=CONTEXT_SETTINGS)
@click.argument("job_file", type=click.Path(dir_okay=False, path_type=Path), metavar="JOB.toml")
@click.option("--shard", default="1/1", show_default=True, metavar="I/N",
              help="Compute only shard I of N (counting from 1), so that N machines can split the job.")
@store_option
@click.option("--no-load", is_flag=True, help="Only write the bundles; do not load them into a store.")
@device_option(default=None, help="Where torch runs (auto, cpu or cuda); overrides the job's device.")
@threads_option
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Compute in this process, or one Ray task per circuit (loaded here as each arrives).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Ray workers (default: the cores this process may use).")
@click.option("--ray-address", default=None, metavar="ADDR",
              help="Join this Ray cluster (auto, ray://host:10001); default: start a local one.")
@quiet_option
def run(job_file, shard, store, no_load, device, threads, executor, workers, ray_address, quiet) -> None:
    """Compute every circuit of a TOML job (skipping those already computed) and load them.

    \b
    A job file:
      model = "toy-zoo"
      dictionaries = ["toy-zoo"]
      tasks = ["agreement_simple", "agreement_nounpp"]
      methods = ["ig"]
      out = "bundles"            # relative to the job file
      [settings]                 # any CircuitSettings field
      node_threshold = 0.1

    \b
    On a cluster: --executor ray (one task per circuit; --ray-address auto to join a running cluster), or,
    without Ray, a SLURM array job (#SBATCH --array=1-N) whose tasks each run
      sfc ingest run job.toml --shard $SLURM_ARRAY_TASK_ID/N --no-load
    and one final sfc ingest run job.toml (nothing left to compute) loads every bundle.
    """
    from sfc_graph.ingest.job import load_job, parse_shard, run_job

    index, count = parse_shard(shard)
    _set_threads(threads)
    job = load_job(job_file)
    source = click.get_current_context().get_parameter_source("store")
    if source == click.core.ParameterSource.DEFAULT and job.store:
        store = job.store  # the job's own store wins over the default, not over an explicit --store
    reporter = progress_for(quiet)

    def report(line: str) -> None:
        click.echo(line)

    results = run_job(job, shard=(index, count), store=None if no_load else store, device=device, progress=reporter,
                      report=report, executor=executor, workers=workers, address=ray_address)
    computed = sum(r.computed for r in results)
    loaded = sum(r.loaded for r in results)
    click.echo(f"shard {index}/{count}: {len(results)} circuit(s), {computed} computed, {loaded} loaded")


def _set_threads(threads: int | None) -> None:
    """``--threads``, or the free cores this process may use (sfc_graph.threads)."""
    from sfc_graph.threads import set_threads

    set_threads(threads)


def _parse_thresholds(text: str) -> tuple[float, ...]:
    from sfc_graph.errors import ComputeError

    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ComputeError(f"--eval-thresholds {text!r}: give numbers separated by commas") from None


def _summary(bundle) -> None:
    manifest = bundle.manifest
    nodes = bundle.nodes
    click.echo(f"wrote {bundle.path}")
    click.echo(f"  circuit {manifest['circuit_id']}  ({manifest['method']}, {manifest['metric']}, "
               f"{manifest['n_examples']} examples, {manifest.get('compute_seconds', 0):.1f} s)")
    click.echo(f"  {nodes.height - 1} nodes ({int((nodes['kind'] == 'error').sum())} error), "
               f"{bundle.edges.height} edges; clean metric {manifest.get('metric_clean', float('nan')):.3f}")
    for row in manifest.get("evaluation", []):
        faith = "n/a" if row["faithfulness"] is None else f"{row['faithfulness']:.3f}"
        compl = "n/a" if row["completeness"] is None else f"{row['completeness']:.3f}"
        click.echo(f"  threshold {row['node_threshold']:<6g} {row['n_nodes']:>6} nodes  "
                   f"faithfulness {faith}  completeness {compl}")
