"""Store commands: ``sfc load``, ``sfc circuits``, ``sfc stats``, ``sfc delete``."""

from __future__ import annotations

import click

from sfc_graph.cli.app import CONTEXT_SETTINGS
from sfc_graph.cli.options import format_option, quiet_option, store_option

# Bundles with more rows than this get a progress bar while loading.
PROGRESS_MIN_ROWS = 200_000


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("bundles", nargs=-1, required=True, type=click.Path(path_type=str))
@store_option
@quiet_option
def load(bundles: tuple[str, ...], store: str, quiet: bool) -> None:
    """Load circuit BUNDLE directories into the store.

    Every bundle is validated before any is loaded, so a bad one loads nothing. A circuit already in the
    store is skipped; each circuit is written in one transaction (all of it or none of it).
    """
    from sfc_graph.bundle import read_bundle, read_manifest
    from sfc_graph.store import open_store

    manifests = {path: read_manifest(path) for path in bundles}
    with open_store(store) as circuit_store:
        present = {path for path, m in manifests.items() if circuit_store.has_circuit(m["circuit_id"])}
        pending = [path for path in bundles if path not in present]
        validated = [read_bundle(path) for path in pending]
        total = sum(b.nodes.height * 4 + b.edges.height for b in validated)
        if quiet or total < PROGRESS_MIN_ROWS:
            results = circuit_store.load_many(validated)
        else:
            results = _load_with_progress(circuit_store, validated, total)
    if quiet:
        return
    outcome = dict(zip(pending, results))
    for path in bundles:
        result = outcome.get(path)
        if result is None or not result.loaded:  # stored before, or the same circuit twice on the line
            click.echo(f"skipped {manifests[path]['circuit_id']}  (already in the store) from {path}")
        else:
            click.echo(f"loaded  {result.circuit_id}  ({manifests[path]['task']}, {result.n_nodes:,} nodes, "
                       f"{result.n_edges:,} edges) from {path}")


def _load_with_progress(circuit_store, bundles, total_rows: int):
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("loading"), BarColumn(), TextColumn("{task.completed:,}/{task.total:,} rows"),
        TimeElapsedColumn(), transient=True,
    ) as bar:
        task = bar.add_task("load", total=total_rows)
        written = 0

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=written + done)

        results = []
        for bundle in bundles:  # one circuit per transaction: the bar moves within each large one
            results += circuit_store.load_many([bundle], progress=advance)
            written += bundle.nodes.height * 4 + bundle.edges.height
        return results


@click.command(context_settings=CONTEXT_SETTINGS)
@store_option
@format_option("table", "json", "csv")
def circuits(store: str, fmt: str) -> None:
    """List the circuits in the store: id, task, model, method, n_nodes, n_edges, created_at."""
    from sfc_graph.cli.output import emit
    from sfc_graph.store import open_store

    with open_store(store, read_only=True, create=False) as circuit_store:
        emit(circuit_store.circuits(), fmt, title="circuits")


@click.command(context_settings=CONTEXT_SETTINGS)
@store_option
@format_option("table", "json", "csv")
def stats(store: str, fmt: str) -> None:
    """Count nodes per label and relationships per type."""
    from sfc_graph.cli.output import emit
    from sfc_graph.store import open_store

    with open_store(store, read_only=True, create=False) as circuit_store:
        emit(circuit_store.stats(), fmt, title="store statistics")


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("circuit_id")
@store_option
def delete(circuit_id: str, store: str) -> None:
    """Remove CIRCUIT_ID: its nodes, edges and memberships, the SHIFT interventions and discovered behaviour
    recorded for it, and shared nodes no other circuit uses."""
    from sfc_graph.store import open_store

    with open_store(store, create=False) as circuit_store:
        records = circuit_store.delete(circuit_id)
    also = [f"{count} {kind if count != 1 else kind[:-1]}" for kind, count in records.items() if count]
    click.echo(f"deleted {circuit_id}" + (f" (and its records: {', '.join(also)})" if also else ""))
