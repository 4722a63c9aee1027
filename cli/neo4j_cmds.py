"""Neo4j commands: ``sfc neo4j-import-files``."""

from __future__ import annotations

import click

from sfc_graph.cli.app import CONTEXT_SETTINGS
from sfc_graph.cli.options import quiet_option


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("bundles", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("--out", "out", required=True, type=click.Path(path_type=str),
              help="New directory for the CSV files, schema.cypher and import.sh.")
@click.option("--database", default="neo4j", show_default=True, help="Database name in the printed command.")
@quiet_option
def neo4j_import_files(bundles: tuple[str, ...], out: str, database: str, quiet: bool) -> None:
    """Write `neo4j-admin database import full` files for circuit BUNDLE directories.

    For a very large first load into an empty Neo4j database: the offline importer is much faster than
    transactions. Shared nodes (features, dictionaries, tasks, models) are written once across all bundles.
    Run OUT/import.sh where neo4j-admin runs, with the database stopped (see docker/README.md); the graph
    is the one `sfc load --store bolt://…` would have written, and later `sfc` commands work on it as usual.
    """
    from sfc_graph.store.neo4j_import import write_import_files

    def report(circuit_id: str, written: bool) -> None:
        if not quiet:
            click.echo(f"{'wrote  ' if written else 'skipped'} {circuit_id}" + ("" if written else "  (given twice)"))

    result = write_import_files(bundles, out, on_bundle=report)
    if quiet:
        return
    nodes = sum(result.node_counts.values())
    rels = sum(result.relationship_counts.values())
    click.echo(f"{len(result.circuits)} circuits, {nodes:,} nodes, {rels:,} relationships in {out}")
    click.echo(f"import (database stopped):  {out}/import.sh {database}")
    click.echo("or:")
    click.echo(result.command(database=database))
