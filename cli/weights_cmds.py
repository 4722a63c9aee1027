"""``sfc weights``: the input-invariant weight graph of a model and its transcoders (Dunefsky et al. 2024), and
transcoder circuits found by the paper's path search (method ``transcoder-paths``)."""

from __future__ import annotations

from pathlib import Path

import click
from sfc_graph.cli.app import CONTEXT_SETTINGS
from sfc_graph.cli.options import device_option, format_option, quiet_option, store_option, threads_option

model_option = click.option("--model", "model_spec", required=True, metavar="M",
                            help="toy-zoo, a checkpoint directory, or a transformer_lens model name.")
dict_option = click.option("--dict", "dict_specs", required=True, multiple=True, metavar="SPEC",
                           help="toy-zoo-transcoders, a directory with one sub-directory per site, or SITE=PATH "
                                "(repeatable); every mlp_L needs a transcoder.")


@click.group(context_settings=CONTEXT_SETTINGS)
def weights() -> None:
    """The weight graph of a model + transcoders, and transcoder circuits (seed 004).

    \b
    Example:
      sfc weights build --model toy-zoo --dict toy-zoo-transcoders --out weights/zoo --load
      sfc query weight-neighbors -p feature toy-zoo-v2/mlp_3/transcoder-256/173
      sfc weights circuit --model toy-zoo --dict toy-zoo-transcoders --task greater_than --out bundles/gt --load
    """


def _load(model_spec: str, dict_specs, device: str, threads: int | None):
    from sfc_graph.ingest.dictionaries import load_dictionary_set
    from sfc_graph.ingest.model import load_model
    from sfc_graph.ingest.transcoder_model import TranscoderModel
    from sfc_graph.threads import set_threads

    from sfc_graph.errors import ComputeError

    # The weight graph's top-k state and the path search's traces live on the CPU, so the model does too (the
    # work is products of weight matrices and one forward pass per prompt); auto means cpu here.
    if device == "cuda":
        raise ComputeError("transcoder analysis (sfc weights) runs on the CPU; use --device cpu or auto")
    set_threads(threads)
    handle = load_model(model_spec, device="cpu")
    dictionaries = load_dictionary_set(list(dict_specs), n_layers=handle.n_layers, d_model=handle.d_model,
                                       model_id=handle.model_id)
    return handle, dictionaries, TranscoderModel(handle, dictionaries)


@weights.command(context_settings=CONTEXT_SETTINGS)
@model_option
@dict_option
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="Where to write the weight graph (a directory of Parquet files and a manifest).")
@click.option("--top-k", type=click.IntRange(min=1), default=50, show_default=True,
              help="Inputs kept per target feature and kind (resid, ov).")
@click.option("--floor", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Also keep every input with |weight| at least this.")
@click.option("--n-tokens", type=click.IntRange(min=1), default=10, show_default=True,
              help="De-embedding tokens per feature and route; logit-lens tokens per end.")
@click.option("--block", type=click.IntRange(min=1), default=1024, show_default=True,
              help="Target features per block (peak memory ~ d_sae x block floats per product).")
@click.option("--no-deembeddings", is_flag=True, help="Skip the de-embeddings (W_E . enc, through heads).")
@click.option("--no-logit-lens", is_flag=True, help="Skip the logit lens of the dictionaries' features.")
@click.option("--load", "load_after", is_flag=True, help="Also load the weight graph into --store.")
@store_option
@device_option()
@threads_option
@click.option("--overwrite", is_flag=True, help="Replace an existing weight graph at --out.")
@quiet_option
def build(model_spec, dict_specs, out, top_k, floor, n_tokens, block, no_deembeddings, no_logit_lens, load_after,
          store, device, threads, overwrite, quiet) -> None:
    """Compute the input-invariant weight graph and write it to --out.

    Transcoder feature -> later feature through the residual stream (W_dec[i] . W_enc[:, j]) and through every
    attention head's OV circuit; de-embeddings (W_E . W_enc[:, j], directly and through each head); the logit lens
    (W_dec . W_U) of every dictionary feature. LayerNorm is a fixed scale (recorded in the manifest).
    """
    import time

    from sfc_graph.errors import BundleError
    from sfc_graph.ingest.weights import WeightSettings, build_weight_graph, weight_graph_units
    from sfc_graph.ingest.weights_store import write_weight_graph

    if Path(out).exists() and not overwrite:
        raise BundleError(f"{out}: already exists; choose another --out or pass --overwrite")
    settings = WeightSettings(top_k=top_k, floor=floor, n_tokens=n_tokens, block=block,
                              deembeddings=not no_deembeddings, logit_lens=not no_logit_lens)
    settings.validate()
    handle, _, tm = _load(model_spec, dict_specs, device, threads)
    start = time.perf_counter()
    if quiet:
        graph = build_weight_graph(tm, settings)
    else:
        from sfc_graph.cli.progress import progress_for

        bars = progress_for(False)
        assert bars is not None  # not quiet: bars are drawn
        with bars.step("weight graph", weight_graph_units(tm, settings)) as advance:
            seen = [0]

            def progress(done: int, _total: int) -> None:
                advance(done - seen[0])
                seen[0] = done

            graph = build_weight_graph(tm, settings, progress)
    seconds = time.perf_counter() - start
    graph.manifest["build_seconds"] = round(seconds, 3)
    write_weight_graph(graph, out, overwrite=overwrite)
    if quiet:
        click.echo(str(out))
    else:
        counts = graph.manifest["counts"]
        click.echo(f"wrote {out}: weight graph {graph.manifest['weight_graph_id']} of {handle.model_id} "
                   f"({counts['feature_edges']} feature edges, {counts['token_edges']} token edges, {seconds:.1f} s)")
    if load_after:
        _load_into(store, [out], quiet)


def _load_into(store: str, paths, quiet: bool) -> None:
    from sfc_graph.ingest.weights_store import load_weight_graph, read_weight_graph
    from sfc_graph.store import open_store

    graphs = [read_weight_graph(p) for p in paths]  # validate all before writing any
    with open_store(store) as opened:
        for path, graph in zip(paths, graphs):
            loaded = load_weight_graph(opened, graph)
            gid = graph.manifest["weight_graph_id"]
            if not quiet:
                click.echo(f"{'loaded' if loaded else 'already in the store:'} weight graph {gid} ({path}) into {store}")


@weights.command(context_settings=CONTEXT_SETTINGS)
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="DIR...")
@store_option
@quiet_option
def load(paths, store, quiet) -> None:
    """Load weight graphs (directories written by `sfc weights build`) into the store; re-loads are no-ops."""
    _load_into(store, list(paths), quiet)


@weights.command(name="list", context_settings=CONTEXT_SETTINGS)
@store_option
@format_option("table", "json", "csv")
def list_(store, fmt) -> None:
    """The weight graphs in the store."""
    from sfc_graph.cli.output import emit
    from sfc_graph.ingest.weights_store import weight_graphs
    from sfc_graph.store import open_store

    with open_store(store, read_only=True, create=False) as opened:
        emit(weight_graphs(opened), fmt)


@weights.command(context_settings=CONTEXT_SETTINGS)
@click.argument("graph_id", metavar="WEIGHT_GRAPH_ID")
@store_option
def delete(graph_id, store) -> None:
    """Remove a weight graph's WEIGHT relationships and record (features and tokens stay)."""
    from sfc_graph.ingest.weights_store import delete_weight_graph
    from sfc_graph.store import open_store

    with open_store(store) as opened:
        delete_weight_graph(opened, graph_id)
    click.echo(f"deleted weight graph {graph_id}")


@weights.command(context_settings=CONTEXT_SETTINGS)
@model_option
@dict_option
@click.option("--task", "task_spec", required=True, metavar="T", help="A zoo task name or a JSONL file.")
@click.option("--example", type=click.IntRange(min=0), default=0, show_default=True,
              help="Which example of the task (0-based): the search runs on one prompt, as in the paper.")
@click.option("--root", default="logit-diff", show_default=True, metavar="ROOT",
              help="logit-diff (clean answer minus patch answer at the last position), or a transcoder feature "
                   "mlp_L/i[@position] (default position: the last).")
@click.option("--num-iters", type=click.IntRange(min=1), default=3, show_default=True, help="Path length beyond the root.")
@click.option("--num-branches", type=click.IntRange(min=1), default=5, show_default=True,
              help="Children expanded per node, and paths kept per iteration.")
@click.option("--no-cap", is_flag=True, help="Rank by raw contributions (the paper caps them at the smallest "
                                             "feature activation on the path).")
@click.option("--keep-bos", is_flag=True, help="Also follow attention from position 0.")
@click.option("--no-errors", is_flag=True, help="Transcoder error terms do not compete as leaves.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), metavar="BUNDLE_DIR")
@click.option("--overwrite", is_flag=True, help="Replace an existing bundle at --out.")
@click.option("--load", "load_after", is_flag=True, help="Also load the bundle into --store.")
@store_option
@device_option()
@threads_option
def circuit(model_spec, dict_specs, task_spec, example, root, num_iters, num_branches, no_cap, keep_bos, no_errors,
            out, overwrite, load_after, store, device, threads) -> None:
    """Compute a transcoder circuit (method transcoder-paths) by the paper's greedy path search and write it as a
    bundle: nodes are transcoder features, heads, input tokens and error nodes; edges carry the input-dependent
    weight and its input-invariant factor (weight_invariant)."""
    from sfc_graph.ingest.tasks import load_task
    from sfc_graph.ingest.transcoder_circuit import TranscoderCircuitSettings, compute_transcoder_circuit

    handle, dictionaries, _ = _load(model_spec, dict_specs, device, threads)
    settings = TranscoderCircuitSettings(num_iters=num_iters, num_branches=num_branches, ignore_bos=not keep_bos,
                                         cap=not no_cap, include_errors=not no_errors, example=example, root=root)
    result = compute_transcoder_circuit(handle, dictionaries, load_task(task_spec), settings)
    bundle = result.write(out, overwrite=overwrite)
    info = result.manifest["transcoder_paths"]
    root_info = info["root_target"]
    click.echo(f"wrote {bundle.path}")
    click.echo(f"  circuit {result.circuit_id}  ({result.nodes.height} nodes, {result.edges.height} edges, "
               f"{info['n_paths']} paths)")
    click.echo(f"  prompt: {info['prompt']!r}; root {settings.root} = {root_info['value']:.4f}")
    click.echo("  root decomposition: " + ", ".join(f"{k} {v:+.4f}" for k, v in info["root_decomposition"].items()))
    if load_after:
        from sfc_graph.store import open_store

        with open_store(store) as opened:
            loaded = opened.load(bundle)
        click.echo(f"{'loaded' if loaded.loaded else 'already in the store:'} {result.circuit_id} into {store}")
