"""``sfc import``: circuits made by other tools, written as bundles (then ``sfc load`` them).

Export to those tools' formats is ``sfc export --format neuronpedia`` (cli/report_cmds.py).
"""

from __future__ import annotations

from pathlib import Path

import click

from sfc_graph.cli.app import CONTEXT_SETTINGS
from sfc_graph.errors import InteropError

out_option = click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
                          metavar="BUNDLE", help="Bundle directory to write.")
overwrite_option = click.option("--overwrite", is_flag=True,
                                help="Replace BUNDLE if it is already a bundle (never any other directory).")


@click.group("import", context_settings=CONTEXT_SETTINGS)
def import_group() -> None:
    """Bring circuits from other tools into bundles: circuit-tracer / Neuronpedia attribution graphs, and the
    sparse-feature-circuits reference implementation's .pt files."""


@import_group.command("circuit-tracer", context_settings=CONTEXT_SETTINGS)
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@out_option
@click.option("--model", default=None, help="Model id for the store (default: the graph's metadata.scan).")
@click.option("--task", default=None, help="Task name for the store (default: the graph's slug).")
@overwrite_option
def import_circuit_tracer(file: Path, out: Path, model: str | None, task: str | None, overwrite: bool) -> None:
    """Import an attribution-graph JSON FILE (circuit-tracer's create_graph_files, or a Neuronpedia download).

    Transcoder features become mlp_L features, error nodes mlp_L/err, embeddings token/ID nodes and logits
    logit/ID nodes, each at its prompt position; influence, activation and clerp are kept as node columns and
    the prompt in the manifest. Graphs exported by sfc-graph come back exactly.
    """
    from sfc_graph.interop.attribution_graph import import_attribution_file

    bundle = import_attribution_file(file, out, model=model, task=task, overwrite=overwrite)
    click.echo(f"wrote {out} (circuit {bundle.circuit_id}: {bundle.nodes.height:,} nodes, "
               f"{bundle.edges.height:,} edges); next: sfc load {out}")


@import_group.command("feature-circuits", context_settings=CONTEXT_SETTINGS)
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@out_option
@click.option("--model", required=True, help="Model id the circuit was computed on (e.g. pythia-70m-deduped).")
@click.option("--task", required=True, help="Task name for the store (e.g. nounpp).")
@click.option("--dict", "dicts", multiple=True, metavar="SITE=ID",
              help="Dictionary id of a site (repeatable); default <model>/<site>. Circuits over the same "
                   "dictionary ids share features in the store.")
@click.option("--metric", default="logit_diff", show_default=True, help="The metric the circuit was computed for.")
@overwrite_option
def import_feature_circuits(file: Path, out: Path, model: str, task: str, dicts: tuple[str, ...], metric: str,
                            overwrite: bool) -> None:
    """Import a .pt circuit FILE written by the sparse-feature-circuits reference code (saprmarks/feature-circuits).

    The file is read with a restricted unpickler (tensors, containers and SparseAct records only): a file that
    names anything else is refused and nothing in it runs.
    """
    from sfc_graph.interop.feature_circuits import import_reference_file

    dictionaries = {}
    for item in dicts:
        site, sep, dict_id = item.partition("=")
        if not sep or not site or not dict_id:
            raise InteropError(f"--dict {item!r}: expected SITE=ID, e.g. resid_3=pythia-70m/resid_3/10_32768")
        dictionaries[site] = dict_id
    bundle = import_reference_file(file, out, model=model, task=task, dictionaries=dictionaries, metric=metric,
                                   overwrite=overwrite)
    click.echo(f"wrote {out} (circuit {bundle.circuit_id}: {bundle.nodes.height:,} nodes, "
               f"{bundle.edges.height:,} edges); next: sfc load {out}")
