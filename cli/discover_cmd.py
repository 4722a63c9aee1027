"""``sfc discover``: find behaviours by clustering a corpus's contexts, one circuit per behaviour, into the store."""

from __future__ import annotations

from pathlib import Path

import click

from sfc_graph.cli.app import CONTEXT_SETTINGS
from sfc_graph.cli.options import device_option, quiet_option, store_option, threads_option


@click.command(context_settings=CONTEXT_SETTINGS)
@click.option("--model", "model_spec", default="toy-zoo", show_default=True, metavar="M",
              help="toy-zoo, a checkpoint directory, or a transformer_lens model name.")
@click.option("--dict", "dict_specs", multiple=True, default=("toy-zoo",), show_default=True, metavar="SPEC",
              help="toy-zoo, a directory with one sub-directory per site, or SITE=PATH (repeatable).")
@click.option("--corpus", default="zoo", show_default=True, metavar="FILE|zoo",
              help="A text file (one document per line), or the toy zoo's labelled text stream.")
@click.option("--n-clusters", type=click.IntRange(min=2), default=8, show_default=True, help="Behaviours to find.")
@click.option("--features", type=click.Choice(["act", "grad", "both"]), default="grad", show_default=True,
              help="Cluster the last residual stream (act), the next-token loss gradient there (grad), or both.")
@click.option("--algorithm", type=click.Choice(["kmeans", "spectral"]), default="kmeans", show_default=True,
              help="k-means, or spectral clustering on the cosine affinity (as Michaud et al.'s quanta).")
@click.option("--exclude-label", "exclude_labels", multiple=True, metavar="LABEL",
              help="Labelled corpora: leave out contexts with this planted label (e.g. none, the filler text).")
@click.option("--n-contexts", type=click.IntRange(min=2), default=1024, show_default=True,
              help="Contexts (prefix, next token) sampled from the corpus.")
@click.option("--pca-dims", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--min-cluster-size", type=click.IntRange(min=1), default=4, show_default=True,
              help="Smaller clusters get no circuit.")
@click.option("--examples-per-circuit", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--method", type=click.Choice(["attrib", "ig", "exact"]), default="ig", show_default=True,
              help="How each behaviour's circuit is computed (metric -log p(next token), zero ablation).")
@click.option("--node-threshold", type=click.FloatRange(min=0), default=0.1, show_default=True)
@click.option("--edge-threshold", type=click.FloatRange(min=0), default=0.01, show_default=True)
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=Path("discovered"),
              show_default=True, metavar="DIR", help="Directory for the circuits' bundles and the report.")
@click.option("--no-load", is_flag=True, help="Only write bundles and the report; do not load into a store.")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Compute circuits in this process, or one Ray task per circuit.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Ray workers (default: the cores this process may use).")
@click.option("--ray-address", default=None, metavar="ADDR",
              help="Join this Ray cluster (auto, ray://host:10001); default: start a local one.")
@device_option()
@threads_option
@store_option
@quiet_option
def discover(model_spec, dict_specs, corpus, n_clusters, features, algorithm, exclude_labels, n_contexts, pca_dims,
             min_cluster_size, examples_per_circuit, seed, method, node_threshold, edge_threshold, out, no_load, executor, workers,
             ray_address, device, threads, store, quiet) -> None:
    """Discover behaviours without labels: cluster the corpus's contexts (Michaud et al.'s quanta), compute a
    sparse feature circuit per cluster (metric -log p(next token), zero ablation, as Marks et al.), load each
    into the store with a Behaviour node, and write a discovery report.

    \b
    Example:
      sfc discover --n-clusters 120 --features both --method attrib --out discovered
      sfc query behaviours
    """
    from sfc_graph.ingest.compute import CircuitSettings
    from sfc_graph.ingest.discovery import DiscoverySettings, run_discovery
    from sfc_graph.ingest.executor import default_workers
    from sfc_graph.ingest.model import load_model
    from sfc_graph.report.discovery import summary_lines, write_discovery_report
    from sfc_graph.threads import set_threads

    set_threads(threads)
    settings = DiscoverySettings(
        n_clusters=n_clusters, features=features, algorithm=algorithm, n_contexts=n_contexts, pca_dims=pca_dims,
        seed=seed, min_cluster_size=min_cluster_size, examples_per_circuit=examples_per_circuit,
        exclude_labels=exclude_labels,
    )
    circuit = CircuitSettings(method=method, node_threshold=node_threshold, edge_threshold=edge_threshold)
    handle = load_model(model_spec, device=device)

    def run(target):
        return run_discovery(
            handle, model_spec=model_spec, dict_specs=list(dict_specs), corpus=corpus, settings=settings,
            circuit=circuit, out=out / "bundles", store=target, executor=executor,
            workers=workers or default_workers(), address=ray_address, device=device,
            report=(lambda line: None) if quiet else click.echo,  # -q: the summary only, no line per behaviour
        )

    if no_load:
        result = run(None)
    else:
        from sfc_graph.store import open_store

        with open_store(store) as target:
            result = run(target)
    report = write_discovery_report(result, out / "report")
    click.echo(f"discovery {result.discovery.id}:")
    for line in summary_lines(result):
        click.echo(f"  {line}")
    click.echo(f"  report: {report}")
    if not no_load:
        click.echo(f"  next: sfc query behaviours -p discovery {result.discovery.id} --store {store}")
