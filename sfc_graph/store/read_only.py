"""Read-only Cypher: two fences, the engine's own verdict first and a keyword filter second.

A browser or a shell hands us arbitrary Cypher to run "read-only". Opening the embedded database
read-only is not enough: LadybugDB still runs ``LOAD FROM '<any file>'`` and ``COPY (…) TO '<any path>'``
on a read-only database, since neither changes the database. So:

1. The engine plans the statement (``EXPLAIN``, prepared, so that several statements in one string are
   refused before anything runs) and every physical operator and table function of that plan must be on
   an allow-list of reads (:func:`ladybug_plan_verdict`). Anything the engine adds later is refused until
   it is listed here. Neo4j's fence is the server's: a read transaction plus the ``EXPLAIN`` summary's
   query type (see :meth:`sfc_graph.store.neo4j.Neo4jStore.check_read_only`).
2. The keyword filter (:func:`write_clause`) refuses statements that name a writing clause at all.

Also here: :func:`unbound_parameters`, since LadybugDB runs a statement whose ``$name`` has no value and
answers with no rows, as if the data were absent.
"""

from __future__ import annotations

import re
import warnings
from typing import Any

from ..errors import QueryError

# Clauses that change a database (or its files, users, settings) in LadybugDB's or Neo4j's Cypher.
WRITE_KEYWORDS = (
    "CREATE", "MERGE", "SET", "DELETE", "DETACH", "REMOVE", "DROP", "COPY", "LOAD", "ALTER", "INSTALL",
    "UNINSTALL", "ATTACH", "EXPORT", "IMPORT", "CHECKPOINT", "BEGIN", "COMMIT", "ROLLBACK", "FOREACH",
    "GRANT", "REVOKE", "DENY",
)
# Procedures a read-only `CALL name(...)` may name: catalogue look-ups of both engines. Anything else
# (which could write, e.g. apoc.*, or change settings) is refused. `CALL { ... }` subqueries are fine:
# their clauses are checked like the rest.
READ_PROCEDURES = (
    "show_tables", "table_info", "show_connection", "db_version", "current_setting", "show_functions",
    "show_indexes", "show_warnings", "show_macros", "show_projected_graphs", "show_attached_databases",
    "db.labels", "db.relationshiptypes", "db.propertykeys", "db.schema.visualization", "db.schema.nodetypeproperties",
    "db.schema.reltypeproperties", "db.info", "dbms.components",
)

# LadybugDB physical operators that only read the database (names as EXPLAIN prints them).
LADYBUG_READ_OPERATORS = frozenset({
    "RESULT_COLLECTOR", "PROJECTION", "FILTER", "FLATTEN", "LIMIT", "SKIP", "TOP_K", "TOP_K_SCAN",
    "ORDER_BY", "ORDER_BY_MERGE", "ORDER_BY_SCAN", "AGGREGATE", "AGGREGATE_FINALIZE", "AGGREGATE_SCAN",
    "HASH_JOIN_BUILD", "HASH_JOIN_PROBE", "INTERSECT_BUILD", "INTERSECT", "CROSS_PRODUCT", "UNION_ALL_SCAN",
    "UNWIND", "SCAN_NODE_TABLE", "PRIMARY_KEY_SCAN_NODE_TABLE", "SCAN_REL_TABLE", "RECURSIVE_EXTEND",
    "PATH_PROPERTY_PROBE", "SEMI_MASKER", "MULTIPLICITY_REDUCER", "EMPTY_RESULT", "DUMMY_SCAN", "DUMMY_SINK",
    "TABLE_FUNCTION_CALL", "OFFSET_SCAN_NODE_TABLE", "COUNT_REL_TABLE", "PARTITIONER", "ACCUMULATE",
    "INDEX_LOOKUP", "DUMMY", "QUERY_PRIMARY_KEY_LOOKUP",
})
# Table functions (``Function:`` lines of TABLE_FUNCTION_CALL) that read the catalogue or intermediate
# results; file readers (READ_CSV…, READ_PARQUET…, a Python object scan) are not here.
LADYBUG_READ_FUNCTIONS = frozenset({
    "READ_FTABLE", "SHOW_TABLES", "TABLE_INFO", "SHOW_CONNECTION", "DB_VERSION", "CURRENT_SETTING",
    "SHOW_FUNCTIONS", "SHOW_INDEXES", "SHOW_WARNINGS", "SHOW_MACROS", "SHOW_PROJECTED_GRAPHS",
    "SHOW_ATTACHED_DATABASES",
})

_STRIP = re.compile(r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|`[^`]*`|//[^\n]*|/\*.*?\*/""", re.DOTALL)
_OPERATOR = re.compile(r"([A-Z][A-Z0-9_]*)\[\d+\]")
_FUNCTION = re.compile(r"Function:\s*([A-Za-z0-9_]+)")
_PARAM = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


def _blank(cypher: str) -> str:
    """Strings, quoted names and comments replaced by spaces (same length)."""
    return _STRIP.sub(lambda m: " " * len(m.group(0)), cypher)


def write_clause(cypher: str) -> str | None:
    """The first clause in ``cypher`` that would modify the store, or None for a read-only statement.

    Strings, quoted names and comments are blanked first; property keys (``n.set``), parameters
    (``$delete``) and map keys (``{create: 1}``) are not clauses.

    >>> write_clause("MATCH (n) SET n.x = 1")
    'SET'
    >>> write_clause("MATCH (n) WHERE n.name = 'DELETE' RETURN n.set AS x") is None
    True
    """
    text = _blank(cypher)
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


def unbound_parameters(cypher: str, params: dict[str, Any] | None) -> list[str]:
    """``$names`` the statement uses (outside strings and comments) that ``params`` gives no value.

    >>> unbound_parameters("MATCH (c) WHERE c.id = $id AND c.x = '$not' RETURN c", {})
    ['id']
    """
    given = set(params or {})
    return sorted({name for name in _PARAM.findall(_blank(cypher)) if name not in given})


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def require_bound(cypher: str, params: dict[str, Any] | None) -> None:
    """Every ``$name`` has a value, and every value is one the engines can take (integers fit in 64 bits)."""
    missing = unbound_parameters(cypher, params)
    if missing:
        flags = " ".join(f"-p {name} VALUE" for name in missing)
        raise QueryError(f"the statement uses ${', $'.join(missing)} but no value was given for "
                         f"{'it' if len(missing) == 1 else 'them'} (on the command line: {flags})")
    for name, value in (params or {}).items():
        if _too_large(value):
            raise QueryError(f"parameter {name!r} holds an integer outside the 64-bit range the database stores "
                             f"({INT64_MIN} to {INT64_MAX})")


def _too_large(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return not INT64_MIN <= value <= INT64_MAX
    if isinstance(value, (list, tuple)):
        return any(_too_large(v) for v in value)
    if isinstance(value, dict):
        return any(_too_large(v) for v in value.values())
    return False


def refuse_write_clause(cypher: str) -> None:
    clause = write_clause(cypher)
    if clause:
        raise QueryError(f"refused: the statement contains {clause}, which can modify the store or read "
                         "files; read-only Cypher allows only reads (sfc cypher: pass --write to allow it)")


def ladybug_plan(conn: Any, cypher: str, params: dict[str, Any] | None) -> str:
    """The engine's physical plan of ``cypher`` (EXPLAIN, prepared: nothing runs, one statement only)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # prepare() is deprecated, not removed
        try:
            prepared = conn.prepare("EXPLAIN " + cypher, params or {})
        except (RuntimeError, TypeError, ValueError, AttributeError) as exc:  # a value the binding cannot take
            raise QueryError(f"the embedded store refused the query: {str(exc).strip().splitlines()[0]}") from None
    if not prepared.is_success():
        message = prepared.get_error_message().strip().splitlines()[0]
        if "multiple statements" in message:
            raise QueryError("refused: read-only Cypher runs one statement at a time (drop the ';' and what "
                             "follows)")
        raise QueryError(f"the embedded store refused the query: {message}")
    result = conn.execute(prepared, params or {})
    try:
        return str(result.get_as_pl()[0, 0])
    finally:
        result.close()


def ladybug_plan_verdict(plan: str) -> str | None:
    """None when every operator and table function of ``plan`` only reads the database, else the first
    that does not (``COPY_TO``, ``READ_CSV_PARALLEL`` …)."""
    for operator in _OPERATOR.findall(plan):
        if operator not in LADYBUG_READ_OPERATORS:
            return operator
    for function in _FUNCTION.findall(plan):
        if function.upper() not in LADYBUG_READ_FUNCTIONS:
            return function.upper()
    return None


__all__ = ["write_clause", "unbound_parameters", "require_bound", "refuse_write_clause", "ladybug_plan",
           "ladybug_plan_verdict", "WRITE_KEYWORDS", "READ_PROCEDURES"]
