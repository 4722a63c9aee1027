"""Export, comparison and diagram commands: ``sfc export``, ``sfc compare``, ``sfc viz``."""

from __future__ import annotations

from pathlib import Path

import click

from sfc_graph.cli.app import CONTEXT_SETTINGS
from sfc_graph.cli.options import param_option, store_option
from sfc_graph.cli.output import check_out_dir, check_out_path

EXPORT_FORMATS = ("graphml", "gexf", "json", "gpickle")
NEURONPEDIA = "neuronpedia"

node_threshold_option = click.option(
    "--node-threshold", type=click.FloatRange(min=0.0), default=0.0, show_default=True, metavar="X",
    help="Keep nodes with |effect| >= X (the output node is always kept).",
)
edge_threshold_option = click.option(
    "--edge-threshold", type=click.FloatRange(min=0.0), default=0.0, show_default=True, metavar="Y",
    help="Keep edges with |weight| >= Y between kept nodes.",
)


def _open(store: str):
    from sfc_graph.store import open_store

    return open_store(store, read_only=True)


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("circuit_id")
@click.option("--format", "fmt", type=click.Choice(EXPORT_FORMATS + (NEURONPEDIA,)), default=None,
              help="File format (json = NetworkX node-link; neuronpedia = attribution-graph JSON for Neuronpedia "
                   "and circuit-tracer's viewer); default: from the --out extension.")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), metavar="PATH",
              callback=check_out_path,
              help="File to write; for --format neuronpedia, a directory (gets <slug>.json and graph-metadata.json).")
@node_threshold_option
@edge_threshold_option
@click.option("--query", "query_name", default=None, metavar="NAME",
              help="Export only the part of the circuit this named query returns (its nodes, edges or paths); "
                   "its circuit parameter defaults to CIRCUIT_ID.")
@param_option
@click.option("--slug", default=None, help="neuronpedia: the graph's slug (file name); default: the circuit id.")
@store_option
def export(circuit_id: str, fmt: str | None, out: Path, node_threshold: float, edge_threshold: float,
           query_name: str | None, params: tuple[tuple[str, str], ...], slug: str | None, store: str) -> None:
    """Export circuit CIRCUIT_ID (or the subgraph a --query returns): a NetworkX graph file (GraphML for Gephi,
    GEXF, node-link JSON, pickle), or attribution-graph JSON for Neuronpedia and circuit-tracer's viewer.

    Nodes are keyed by node id (``resid_0/17``), or ``node_id@position`` when the circuit keeps positions;
    they carry node_id, kind, site, layer, index, position, effect and feature (global identity); edges
    carry weight.
    """
    from sfc_graph.export import bundle_to_networkx, format_for, subgraph_of, write_graph

    if params and not query_name:
        raise click.UsageError("-p sets parameters of --query; give --query NAME")
    fmt = fmt if fmt == NEURONPEDIA else format_for(out, fmt)
    with _open(store) as circuit_store:
        bundle = circuit_store.read_circuit(circuit_id)
        graph = bundle_to_networkx(bundle, node_threshold=node_threshold, edge_threshold=edge_threshold)
        if query_name:
            from sfc_graph.cli.query_cmds import _typed_params

            typed = _typed_params(query_name, params)
            if _declares(query_name, "circuit"):
                typed.setdefault("circuit", circuit_id)
            graph = subgraph_of(graph, circuit_store.query(query_name, **typed))
    if fmt == NEURONPEDIA:
        from sfc_graph.interop.attribution_graph import graph_to_attribution_json, write_attribution_graph

        document = graph_to_attribution_json(graph, bundle.manifest, slug=slug)
        path = write_attribution_graph(document, out)
        click.echo(f"wrote {path} and {out / 'graph-metadata.json'} (neuronpedia, {graph.number_of_nodes():,} "
                   f"nodes, {graph.number_of_edges():,} edges); view: serve {out} with circuit-tracer's viewer")
        return
    write_graph(graph, out, fmt)
    click.echo(f"wrote {out} ({fmt}, {graph.number_of_nodes():,} nodes, {graph.number_of_edges():,} edges)")


def _declares(query_name: str, param: str) -> bool:
    from sfc_graph.queries import get_query

    return any(p.name == param for p in get_query(query_name).params)


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("selectors", nargs=-1, required=True, metavar="CIRCUIT_OR_TASK...")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              callback=check_out_dir,
              help="Directory for report.md, report.html and the PNG plots.")
@click.option("--top-k", type=click.IntRange(min=1), default=10, show_default=True,
              help="Top features listed per circuit.")
@store_option
def compare(selectors: tuple[str, ...], out: Path, top_k: int, store: str) -> None:
    """Write a cross-task comparison report of the circuits named (a task name means all its circuits).

    The report (report.md, and a self-contained report.html) holds an overlap heatmap, a shared-features
    table, per-layer profiles, top features per circuit, error shares and faithfulness curves.
    """
    from sfc_graph.report.compare import build_comparison_report

    with _open(store) as circuit_store:
        report = build_comparison_report(circuit_store, list(selectors), out, top_k=top_k)
    click.echo(f"compared {len(report.circuits)} circuit(s); open {report.html}")
    click.echo(f"  markdown: {report.markdown}  plots: {', '.join(p.name for p in report.images)}")
    for line in report.summary:
        click.echo(f"  - {line}")


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("circuit_id")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              callback=check_out_path,
              help="Diagram file, .svg or .png.")
@node_threshold_option
@edge_threshold_option
@click.option("--max-nodes", type=click.IntRange(min=1), default=60, show_default=True,
              help="Draw at most this many nodes (largest |effect| first) besides the output.")
@click.option("--max-edges", type=click.IntRange(min=0), default=200, show_default=True,
              help="Draw at most this many edges (largest |weight| first).")
@store_option
def viz(circuit_id: str, out: Path, node_threshold: float, edge_threshold: float, max_nodes: int, max_edges: int,
        store: str) -> None:
    """Draw circuit CIRCUIT_ID as a layered diagram (Graphviz): embedding at the bottom, output at the top.

    Features are boxes, SAE error nodes dashed triangles; blue means a positive effect or weight, red a
    negative one; edge width follows |weight|. Needs Graphviz's ``dot`` program.
    """
    from sfc_graph.report.viz import diagram_format, draw_circuit, require_graphviz

    diagram_format(out)
    require_graphviz()
    with _open(store) as circuit_store:
        diagram = draw_circuit(circuit_store, circuit_id, out, node_threshold=node_threshold,
                               edge_threshold=edge_threshold, max_nodes=max_nodes, max_edges=max_edges)
    click.echo(f"wrote {diagram.path} ({diagram.n_nodes} nodes, {diagram.n_edges} edges)")
    if diagram.note:
        click.echo(f"note: {diagram.note}")
