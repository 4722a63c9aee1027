"""``sfc query`` (the named query library) and ``sfc cypher`` (any Cypher, read-only unless ``--write``)."""

from __future__ import annotations

from typing import Any

import click
import polars as pl

# The keyword fence lives with the engine's fence in the store layer; re-exported for older imports.
from sfc_graph.store.read_only import READ_PROCEDURES, WRITE_KEYWORDS, write_clause  # noqa: F401

from .options import format_option, param_option, parse_param_value, store_option
from .output import FORMATS, emit, out_option


def _list_frame() -> pl.DataFrame:
    from sfc_graph.queries import all_queries

    rows = [
        {"name": q.name, "description": q.description, "parameters": ", ".join(p.describe() for p in q.params),
         "columns": ", ".join(c.name for c in q.columns)}
        for q in all_queries()
    ]
    return pl.DataFrame(rows, schema={"name": pl.String, "description": pl.String, "parameters": pl.String,
                                      "columns": pl.String})


def _typed_params(name: str, pairs: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    """``-p`` values, read with the parameter's declared type: text for string parameters (so that an id
    like ``123`` stays a string), JSON otherwise."""
    from sfc_graph.queries import get_query

    declared = {p.name: p for p in get_query(name).params}
    params: dict[str, Any] = {}
    for key, text in pairs:
        p = declared.get(key)
        if p is not None and p.type in ("str", "circuit", "feature", "kind", "node") and text != "null":
            value = parse_param_value(text)
            params[key] = value if isinstance(value, str) else text
        else:
            params[key] = parse_param_value(text)
    return params


@click.command("query", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("name", required=False)
@param_option
@store_option
@format_option(*FORMATS)
@out_option
@click.option("--list", "list_", is_flag=True, help="List the named queries with their parameters and columns.")
def query(name: str | None, params, store: str, fmt: str, out: str | None, list_: bool) -> None:
    """Run the named query NAME from the library (see --list).

    \b
    Examples:
      sfc query --list
      sfc query top-nodes -p circuit CIRCUIT_ID -p k 10
      sfc query shared-features -p tasks '["agreement_simple","agreement_nounpp"]' --format json
      sfc query upstream-paths -p circuit CIRCUIT_ID -p max_hops 4 --format csv --out paths.csv
    """
    if list_:
        emit(_list_frame(), fmt, out)
        return
    if not name:
        raise click.UsageError("give a query NAME, or --list to see them")
    from sfc_graph.queries import get_query
    from sfc_graph.store import open_store

    get_query(name)  # an unknown name fails before the store is opened
    values = _typed_params(name, params)
    with open_store(store, read_only=True, create=False) as opened:
        result = opened.query(name, **values)
    emit(result, fmt, out, title=name)


@click.command("cypher", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("statement")
@param_option
@store_option
@format_option(*FORMATS)
@out_option
@click.option("--write", is_flag=True, help="Allow statements that modify the store (opens it read-write).")
def cypher(statement: str, params, store: str, fmt: str, out: str | None, write: bool) -> None:
    """Run a Cypher STATEMENT on the store; read-only unless --write.

    Values go in as parameters ($name in the statement, -p name VALUE on the command line), never into
    the text. Without --write the store is opened read-only and statements with writing clauses
    (CREATE, MERGE, SET, DELETE, REMOVE, DROP, COPY, LOAD, ...) are refused before they reach it.

    \b
    Examples:
      sfc cypher "MATCH (c:Circuit) RETURN c.id AS id, c.task AS task"
      sfc cypher 'MATCH (f:Feature)<-[:CONTAINS]-(c:Circuit) WHERE f.layer = $layer
                  RETURN f.id AS feature, count(c) AS circuits ORDER BY circuits DESC LIMIT 10' -p layer 3
    """
    from sfc_graph.store import open_store

    from sfc_graph.store.read_only import refuse_write_clause, require_bound

    values = {key: parse_param_value(text) for key, text in params}
    require_bound(statement, values)  # before opening the store: a missing -p is the user's to fix
    if not write:
        refuse_write_clause(statement)
    with open_store(store, read_only=not write, create=False) as opened:
        result = opened.run(statement, values) if write else opened.run_read_only(statement, values)
    emit(result, fmt, out)


__all__ = ["query", "cypher", "write_clause"]
