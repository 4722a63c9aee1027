"""``sfc query`` (the named query library) and ``sfc cypher`` (any Cypher, read-only unless ``--write``)."""

from __future__ import annotations

import re
from typing import Any

import click
import polars as pl

from sfc_graph.errors import QueryError

from .options import format_option, param_option, parse_param_value, store_option
from .output import FORMATS, emit, out_option

# Clauses that change a database (or its files, users, settings) in LadybugDB's or Neo4j's Cypher.
WRITE_KEYWORDS = (
    "CREATE", "MERGE", "SET", "DELETE", "DETACH", "REMOVE", "DROP", "COPY", "LOAD", "ALTER", "INSTALL",
    "UNINSTALL", "ATTACH", "EXPORT", "IMPORT", "CHECKPOINT", "BEGIN", "COMMIT", "ROLLBACK", "FOREACH",
    "GRANT", "REVOKE", "DENY",
)
# Procedures a read-only `CALL name(...)` may name: catalogue look-ups of both engines. Anything else
# (which could write, e.g. apoc.*, or change settings) needs --write. `CALL { ... }` subqueries are fine:
# their clauses are checked like the rest.
READ_PROCEDURES = (
    "show_tables", "table_info", "show_connection", "db_version", "current_setting", "show_functions",
    "show_indexes", "show_warnings", "show_macros", "show_projected_graphs", "show_attached_databases",
    "db.labels", "db.relationshiptypes", "db.propertykeys", "db.schema.visualization", "db.schema.nodetypeproperties",
    "db.schema.reltypeproperties", "db.info", "dbms.components",
)

_STRIP = re.compile(
    r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|`[^`]*`|//[^\n]*|/\*.*?\*/""", re.DOTALL
)


def write_clause(cypher: str) -> str | None:
    """The first clause in ``cypher`` that would modify the store, or None for a read-only statement.

    Strings, quoted names and comments are blanked first; property keys (``n.set``), parameters
    (``$delete``) and map keys (``{create: 1}``) are not clauses.
    """
    text = _STRIP.sub(lambda m: " " * len(m.group(0)), cypher)
    for match in re.finditer(r"[A-Za-z_][A-Za-z0-9_.]*", text):
        word = match.group(0)
        before = text[: match.start()].rstrip()[-1:]
        after = text[match.end():].lstrip()[:1]
        if before in (".", "$") or after == ":":
            continue
        upper = word.upper()
        if upper in WRITE_KEYWORDS:
            return upper
        if upper == "CALL":
            rest = text[match.end():].lstrip()
            if rest.startswith("{"):
                continue
            name = re.match(r"[A-Za-z_][A-Za-z0-9_.]*", rest)
            if not name or name.group(0).lower() not in READ_PROCEDURES:
                return f"CALL {name.group(0) if name else ''}".strip()
    return None


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

    if not write:
        clause = write_clause(statement)
        if clause:
            raise QueryError(
                f"refused: the statement contains {clause}, which can modify the store; "
                "sfc cypher is read-only unless you pass --write"
            )
    values = {key: parse_param_value(text) for key, text in params}
    with open_store(store, read_only=not write, create=False) as opened:
        result = opened.run(statement, values)
    emit(result, fmt, out)


__all__ = ["query", "cypher", "write_clause"]
