"""``sfc demo``: the README's main job, end to end on the shipped toy zoo and the embedded store.

Computes a circuit for every zoo task (skipping circuits the store already has: same inputs, same id),
loads them, runs a selection of the named queries, writes the cross-task comparison report and a diagram
per circuit, and tells the user where to look and what to try next.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from sfc_graph.cli.app import CONTEXT_SETTINGS
from sfc_graph.cli.options import device_option, quiet_option, store_option


@click.command(context_settings=CONTEXT_SETTINGS)
@store_option
@click.option("--out", "out_dir", default="sfc-demo", show_default=True, type=click.Path(path_type=Path),
              help="Where bundles, the report and diagrams go.")
@click.option("--method", type=click.Choice(["attrib", "ig", "exact"]), default="ig", show_default=True,
              help="Node-effect estimator.")
@click.option("--n-examples", type=int, default=64, show_default=True, help="Examples per task.")
@click.option("--task", "tasks", multiple=True, help="Only these zoo tasks (repeatable); default: all.")
@device_option()
@quiet_option
def demo(store: str, out_dir: Path, method: str, n_examples: int, tasks: tuple[str, ...], device: str,
         quiet: bool) -> None:
    """Compute, store, query and compare circuits for every task of the toy zoo."""
    from rich.console import Console

    from sfc_graph import zoo
    from sfc_graph.bundle import check_bundle_destination
    from sfc_graph.cli.progress import progress_for
    from sfc_graph.cli.output import emit
    from sfc_graph.errors import SfcError
    from sfc_graph.ingest import CircuitSettings, circuit_id, compute_circuit, load_dictionary_set, load_model, load_task
    from sfc_graph.report import build_comparison_report, render_circuit_diagram
    from sfc_graph.safe_write import check_output_directory
    from sfc_graph.store import open_store
    from sfc_graph.threads import set_threads

    set_threads()  # the free cores this process may use (see sfc_graph.threads)
    console = Console(stderr=True, quiet=quiet)
    progress = progress_for(quiet)
    started = time.perf_counter()
    task_names = list(tasks) or zoo.task_names()
    unknown = sorted(set(task_names) - set(zoo.task_names()))
    if unknown:
        raise SfcError(f"unknown zoo task(s) {', '.join(unknown)}; the zoo has {', '.join(zoo.task_names())}")

    settings = CircuitSettings(method=method, n_examples=n_examples)
    bundles_dir = out_dir / "bundles"
    # Before any work: the output folders must be writable, and --overwrite of a bundle never replaces anything
    # that is not a bundle (a user's folder named like a task).
    check_output_directory(out_dir)
    for name in task_names:
        check_bundle_destination(bundles_dir / name, overwrite=True)
    ids: dict[str, str] = {}
    with open_store(store) as circuit_store:  # before the model: a bad store is reported at once
        console.rule("[bold]1. computing circuits on the toy zoo")
        handle = load_model("toy-zoo", device=device)
        dictionaries = load_dictionary_set(["toy-zoo"], n_layers=handle.n_layers, d_model=handle.d_model,
                                           model_id=handle.model_id)
        for name in task_names:
            task = load_task(name)
            cid = circuit_id(handle, dictionaries, task, settings)
            ids[name] = cid
            if circuit_store.has_circuit(cid):
                console.print(f"[dim]{name}: circuit {cid} already in {store}, not recomputed")
                continue
            t0 = time.perf_counter()
            circuit = compute_circuit(handle, dictionaries, task, settings, progress=progress)
            bundle = circuit.write(bundles_dir / name, overwrite=True)
            result = circuit_store.load(bundle)
            # Report faithfulness at the circuit's own node threshold (the evaluation point nearest to it).
            point = min(circuit.evaluation, key=lambda e: abs(e["node_threshold"] - settings.node_threshold),
                        default=None)
            faith = f", faithfulness {point['faithfulness']:.2f} at |IE| >= {point['node_threshold']:g}" if point else ""
            console.print(f"{name}: {bundle.nodes.height:,} nodes, {bundle.edges.height:,} edges{faith} "
                          f"({time.perf_counter() - t0:.0f} s) -> loaded {result.circuit_id}")

        console.rule("[bold]2. asking questions across circuits")
        circuit_ids = list(ids.values())
        first = ids[task_names[0]]
        showcase: list[tuple[str, str, dict[str, Any]]] = [
            (f"top-nodes in {task_names[0]}", "top-nodes", {"circuit": first, "k": 8}),
            ("features shared by several tasks", "shared-features", {"circuits": circuit_ids, "min_count": 2}),
            ("pairwise overlap", "circuit-overlap", {"circuits": circuit_ids}),
            (f"strongest paths into the output of {task_names[0]}", "upstream-paths", {"circuit": first, "k": 5}),
            (f"error share of {task_names[0]}", "error-share", {"circuit": first}),
        ]
        for title, name, params in showcase:
            frame = circuit_store.query(name, **params)
            if name == "circuit-overlap":
                frame = frame.sort("jaccard", descending=True)
            emit(frame.head(10), "table", title=f"{title}  (sfc query {name})")

        console.rule("[bold]3. writing the comparison report and diagrams")
        report = build_comparison_report(circuit_store, task_names, out_dir / "report")
        diagrams = []
        for name in task_names:
            diagrams.append(render_circuit_diagram(circuit_store, ids[name], out_dir / "diagrams" / f"{name}.svg",
                                                   max_nodes=40))

    elapsed = time.perf_counter() - started
    click.echo(f"""
Done in {elapsed:.0f} s. {len(task_names)} circuits are in the store {store}.

Where to look:
  report      {report}   (and report.md beside it)
  diagrams    {diagrams[0].parent}/  ({', '.join(d.name for d in diagrams[:3])}{', ...' if len(diagrams) > 3 else ''})
  bundles     {bundles_dir}/  (the circuits as Parquet + manifest; the store can be rebuilt from them)

What to try next (`source .venv/bin/activate` puts `sfc` on your PATH):
  sfc circuits --store {store}
  sfc query --list
  sfc query top-nodes -p circuit {first} -p k 10 --store {store}
  sfc query shared-features -p tasks '["agreement_simple", "agreement_nounpp"]' --store {store}
  sfc cypher "MATCH (c:Circuit)-[:CONTAINS]->(f:Feature) RETURN f.id AS feature, count(c) AS n ORDER BY n DESC LIMIT 5" --store {store}
  sfc export {first} --format graphml --out circuit.graphml --store {store}
  sfc ingest compute --model toy-zoo --dict toy-zoo --task ioi --method exact --out my-bundle
  Neo4j: docker compose -f docker/docker-compose.yml up -d, then --store bolt://localhost:7687 (README)""")
