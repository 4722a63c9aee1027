"""The named query library: parameterised Cypher in ``queries/*.cypher`` (DESIGN.md §6).

Each ``NAME.cypher`` file holds one statement after a header of ``//`` comment lines::

    // name: top-nodes
    // description: The k nodes of a circuit with the largest |effect|.
    // param circuit: circuit -- the circuit's id
    // param k: int (>= 1) = 20 -- how many nodes
    // param kind: kind | null = null -- feature, error or output; null for any
    // column node_id: str -- the node's id in the bundle
    // post: upstream_paths
    // one-of: circuits, tasks

``param NAME: TYPE [| null] [(>= N)] [(<= N)] [= DEFAULT] [-- help]``: no default means required; the
default is JSON. Types are ``str``, ``int``, ``float``, ``bool``, ``list[str]`` and the checked types
``circuit`` (an id in the store), ``list[circuit]``, ``list[task]``, ``feature`` (a ``Feature`` id in the
store), ``kind`` (``feature``/``error``/``output``) and ``node`` (a node of the circuit given by the
query's ``circuit`` parameter, written ``node_id`` — every position — or ``node_id@position``; it reaches
the Cypher as the list of the matching ``CircuitNode`` uids). ``column NAME: TYPE`` lists the result
columns in order (``str``, ``int``, ``float``, ``list[str]``, ``list[float]``); the result always has
exactly these, with these dtypes, even when empty. ``post`` names a Python step in
:mod:`sfc_graph.queries.post` that turns the Cypher rows into the result, for semantics that are clearer
and more correct in Python over a bounded candidate set (weighted path ranking, pairwise overlap).
``one-of`` names parameters of which exactly one must be given. A query may hold several statements,
separated by a line holding only ``;``; they run in order with the same parameters and a ``post`` step
receives their results as a list (the path queries fetch a circuit's nodes and its edges apart: reading
both endpoints' properties for every edge costs LadybugDB several times more than two plain scans).

Dialects: ``NAME.cypher`` runs on every backend unless a ``NAME.<dialect>.cypher`` file sits beside it
(``top-nodes.neo4j.cypher``); that variant holds only the statement text (comments allowed), takes the
same parameters and returns the same columns. Files whose name starts with ``_`` are internal statements
(parameter checks), not listed as queries.

Values only ever travel as ``$parameters``; no query text is built from values.

Cross-circuit semantics: a node's identity across circuits is its shared node — the ``Feature`` id for a
feature, the ``ErrorNode`` id (``<dictionary>/err``, i.e. the site and layer of that dictionary) for an
error node, the ``Output`` id for the output. When a circuit keeps positions (aggregation ``none``), a
node appears once per position; cross-circuit queries (shared-features, circuit-overlap, circuit-diff,
feature-circuits) first **sum a node's effects over its positions**, and ``min_effect`` thresholds apply
to that sum. Single-circuit queries keep positions; node labels there read ``node_id@position`` when the
position is ≥ 0 and plain ``node_id`` when effects are aggregated (position −1).
"""

from __future__ import annotations

import difflib
import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import polars as pl

from ..bundle import NODE_KINDS  # the kinds a `kind` parameter accepts: those a bundle may hold
from ..errors import CircuitNotFound, QueryError

PARAM_TYPES = ("str", "int", "float", "bool", "list[str]", "circuit", "list[circuit]", "list[task]", "feature",
               "kind", "node")
COLUMN_TYPES: dict[str, pl.DataType] = {
    "str": pl.String,
    "int": pl.Int64,
    "float": pl.Float64,
    "bool": pl.Boolean,
    "list[str]": pl.List(pl.String),
    "list[float]": pl.List(pl.Float64),
    "list[int]": pl.List(pl.Int64),
}
_STRING_TYPES = ("str", "circuit", "feature", "kind", "node")
_LIST_TYPES = ("list[str]", "list[circuit]", "list[task]")

_PARAM_LINE = re.compile(
    r"^param\s+(?P<name>\w+)\s*:\s*(?P<type>[\w\[\]]+)(?P<nullable>\s*\|\s*null)?"
    r"(?P<bounds>(?:\s*\((?:>=|<=)\s*-?\d+\))*)"
    r"(?:\s+=\s+(?P<default>.+?))?(?:\s+--\s+(?P<help>.*))?$"
)
_BOUND = re.compile(r"\((>=|<=)\s*(-?\d+)\)")
_COLUMN_LINE = re.compile(r"^column\s+(?P<name>\w+)\s*:\s*(?P<type>[\w\[\]]+)(?:\s+--\s+(?P<help>.*))?$")
_PARAM_REF = re.compile(r"\$(\w+)")


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    default: Any = None
    required: bool = True
    nullable: bool = False
    minimum: int | None = None
    maximum: int | None = None
    help: str = ""

    def describe(self) -> str:
        text = f"{self.name}: {self.type}{' | null' if self.nullable else ''}"
        return text if self.required else f"{text} = {json.dumps(self.default)}"


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    help: str = ""

    @property
    def dtype(self) -> pl.DataType:
        return COLUMN_TYPES[self.type]


@dataclass(frozen=True)
class Query:
    name: str
    description: str
    params: tuple[Param, ...]
    columns: tuple[Column, ...]
    text: str  # the portable statement
    variants: tuple[tuple[str, str], ...] = ()  # (dialect, statement)
    post: str | None = None
    one_of: tuple[str, ...] = ()

    def text_for(self, dialect: str) -> str:
        """The text to send to a backend of ``dialect`` (its variant if there is one)."""
        return dict(self.variants).get(dialect, self.text)

    def statements_for(self, dialect: str) -> tuple[str, ...]:
        """The text for ``dialect`` split into its statements (separated by a line holding only ``;``)."""
        return split_statements(self.text_for(dialect))

    def param(self, name: str) -> Param:
        return {p.name: p for p in self.params}[name]

    @property
    def schema(self) -> dict[str, pl.DataType]:
        return {c.name: c.dtype for c in self.columns}


# --- reading the library ------------------------------------------------------------------------------

def _folder():
    return resources.files(__package__)


def _split_header(text: str) -> tuple[list[str], str]:
    header, body, in_header = [], [], True
    for line in text.splitlines():
        stripped = line.strip()
        if in_header and (stripped.startswith("//") or not stripped):
            if stripped:
                header.append(stripped[2:].strip())
            continue
        in_header = False
        if not stripped.startswith("//"):
            body.append(line.rstrip())
    return header, "\n".join(body).strip()


def split_statements(text: str) -> tuple[str, ...]:
    parts, current = [], []
    for line in text.splitlines():
        if line.strip() == ";":
            parts.append("\n".join(current).strip())
            current = []
        else:
            current.append(line)
    parts.append("\n".join(current).strip())
    return tuple(p for p in parts if p)


def parse_query(text: str, *, source: str, variants: tuple[tuple[str, str], ...] = ()) -> Query:
    """Parse one ``.cypher`` file (header and statement); a malformed header is a bug in the library."""
    header, body = _split_header(text)
    fields: dict[str, str] = {}
    params: list[Param] = []
    columns: list[Column] = []
    for line in header:
        if line.startswith("param "):
            params.append(_parse_param(line, source))
        elif line.startswith("column "):
            match = _COLUMN_LINE.match(line)
            if not match or match["type"] not in COLUMN_TYPES:
                raise ValueError(f"{source}: bad column line {line!r}")
            columns.append(Column(match["name"], match["type"], match["help"] or ""))
        elif ":" in line and line.split(":", 1)[0] in ("name", "description", "post", "one-of"):
            key, value = line.split(":", 1)
            fields[key] = value.strip()
        # any other header line is free commentary
    for key in ("name", "description"):
        if key not in fields:
            raise ValueError(f"{source}: header has no '{key}:' line")
    if not columns:
        raise ValueError(f"{source}: header declares no columns")
    if not body:
        raise ValueError(f"{source}: no statement after the header")
    one_of = tuple(p.strip() for p in fields.get("one-of", "").split(",") if p.strip())
    return Query(
        name=fields["name"], description=fields["description"], params=tuple(params), columns=tuple(columns),
        text=body, variants=variants, post=fields.get("post") or None, one_of=one_of,
    )


def _parse_param(line: str, source: str) -> Param:
    match = _PARAM_LINE.match(line)
    if not match or match["type"] not in PARAM_TYPES:
        raise ValueError(f"{source}: bad param line {line!r}")
    bounds = {op: int(value) for op, value in _BOUND.findall(match["bounds"] or "")}
    required = match["default"] is None
    default = None if required else json.loads(match["default"])
    return Param(
        name=match["name"], type=match["type"], default=default, required=required,
        nullable=bool(match["nullable"]), minimum=bounds.get(">="), maximum=bounds.get("<="),
        help=match["help"] or "",
    )


@lru_cache(maxsize=None)
def _library() -> dict[str, Query]:
    files = {p.name: p for p in _folder().iterdir() if p.name.endswith(".cypher") and not p.name.startswith("_")}
    queries: dict[str, Query] = {}
    for file_name, path in sorted(files.items()):
        stem = file_name[: -len(".cypher")]
        if "." in stem:
            continue  # a dialect variant; read with its query below
        variants = []
        for other_name, other in sorted(files.items()):
            if other_name.startswith(stem + ".") and other_name.count(".") == 2:
                dialect = other_name[len(stem) + 1: -len(".cypher")]
                variants.append((dialect, _split_header(other.read_text(encoding="utf-8"))[1]))
        query = parse_query(path.read_text(encoding="utf-8"), source=file_name, variants=tuple(variants))
        if query.name != stem:
            raise ValueError(f"{file_name}: header names the query {query.name!r}; the file name must match")
        queries[query.name] = query
    return queries


@lru_cache(maxsize=None)
def internal_statement(name: str) -> str:
    """An internal statement (``_NAME.cypher``), used to check parameters."""
    return _split_header(_folder().joinpath(f"_{name}.cypher").read_text(encoding="utf-8"))[1]


def all_queries() -> list[Query]:
    """Every named query, by name."""
    return list(_library().values())


def get_query(name: str) -> Query:
    library = _library()
    if name not in library:
        close = difflib.get_close_matches(name, library, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; known queries: {', '.join(library)}"
        raise QueryError(f"no query named {name!r}{hint}")
    return library[name]


# --- running ------------------------------------------------------------------------------------------

def run_query(store, name: str, params: dict[str, Any] | None = None) -> pl.DataFrame:
    """Run the named query on ``store``: check and complete ``params``, run the Cypher, post-process.

    Returns exactly the declared columns, in order, with the declared dtypes.
    """
    query = get_query(name)
    values = check_params(query, dict(params or {}))
    cypher_values = _resolve_in_store(store, query, values)
    frames = []
    for text in query.statements_for(store.dialect):
        used = set(_PARAM_REF.findall(text))
        frames.append(store.run(text, {k: v for k, v in cypher_values.items() if k in used}))
    if query.post:
        from .post import POST_STEPS

        frame = POST_STEPS[query.post](frames, values, cypher_values)
    else:
        (frame,) = frames
    return conform(frame, query)


def check_params(query: Query, params: dict[str, Any]) -> dict[str, Any]:
    """Unknown, missing and ill-typed parameters raise :class:`QueryError`; defaults are filled in."""
    declared = {p.name: p for p in query.params}
    for key in params:
        if key not in declared:
            names = ", ".join(declared) or "none"
            raise QueryError(f"query {query.name} has no parameter {key!r}; its parameters are: {names}")
    if query.one_of:
        given = [n for n in query.one_of if params.get(n) is not None]
        if len(given) != 1:
            raise QueryError(
                f"query {query.name} needs exactly one of the parameters {', '.join(query.one_of)}"
                + (f" (got {', '.join(given)})" if given else "")
            )
    values: dict[str, Any] = {}
    for p in query.params:
        if p.name not in params:
            if p.required and p.name not in query.one_of:
                raise QueryError(f"query {query.name} needs the parameter {p.name!r} ({p.type})")
            values[p.name] = p.default
            continue
        values[p.name] = _check_value(query, p, params[p.name])
    return values


def _check_value(query: Query, p: Param, value: Any) -> Any:
    def bad(expected: str) -> QueryError:
        return QueryError(f"query {query.name}: parameter {p.name!r} must be {expected}, got {value!r}")

    if value is None:
        if p.nullable or p.name in query.one_of:
            return None
        raise bad(f"a {p.type} (it cannot be null)")
    if p.type in _STRING_TYPES:
        if not isinstance(value, str) or not value:
            raise bad("a non-empty string")
        if p.type == "kind" and value not in NODE_KINDS:
            raise bad(f"one of {', '.join(NODE_KINDS)}")
        return value
    if p.type in _LIST_TYPES:
        if isinstance(value, str):  # `-p circuits a,b,c`
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
            raise bad("a non-empty list of strings (JSON, or comma-separated)")
        return list(dict.fromkeys(value))  # order kept, repeats dropped
    if p.type == "bool":
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if p.type == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
    elif p.type == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise bad("a finite number")
        value = float(value)
    if p.minimum is not None and value < p.minimum:
        raise bad(f"at least {p.minimum}")
    if p.maximum is not None and value > p.maximum:
        raise bad(f"at most {p.maximum}")
    return value


def _resolve_in_store(store, query: Query, values: dict[str, Any]) -> dict[str, Any]:
    """Check ids against the store; ``node`` values become lists of CircuitNode uids.

    Optional list parameters left out reach the Cypher as empty lists, so that statements can test them
    with ``IN`` on both backends (a null parameter has no type in LadybugDB).
    """
    resolved = dict(values)
    for p in query.params:
        value = values[p.name]
        if value is None:
            if p.type in _LIST_TYPES:
                resolved[p.name] = []
            continue
        if p.type == "circuit":
            store.require_circuit(value)
        elif p.type == "list[circuit]":
            known = set(store.run(internal_statement("known-circuits"), {"ids": value})["id"].to_list())
            missing = [c for c in value if c not in known]
            if missing:
                raise CircuitNotFound(f"no circuit {missing[0]!r} in the store"
                                      + (f" (nor {len(missing) - 1} more of those given)" if len(missing) > 1 else ""))
        elif p.type == "list[task]":
            known = set(store.run(internal_statement("known-tasks"), {"names": value})["name"].to_list())
            missing = [t for t in value if t not in known]
            if missing:
                raise QueryError(f"no circuit in the store is for task {missing[0]!r}")
        elif p.type == "feature":
            if store.run(internal_statement("known-feature"), {"feature": value}).height == 0:
                raise QueryError(f"no feature {value!r} in the store (a feature id reads '<dictionary id>/<index>')")
        elif p.type == "node":
            resolved[p.name] = _node_uids(store, values["circuit"], value)
    return resolved


def _node_uids(store, circuit: str, ref: str) -> list[str]:
    node_id, position = split_node_ref(ref)
    found = store.run(internal_statement("node-instances"), {"circuit": circuit, "node_id": node_id})
    if position is not None and found.height:
        found = found.filter(pl.col("position") == position)
    if found.height == 0:
        where = f" at position {position}" if position is not None else ""
        raise QueryError(f"no node {node_id!r}{where} in circuit {circuit!r}")
    return found.sort("position")["uid"].to_list()


def split_node_ref(ref: str) -> tuple[str, int | None]:
    """``resid_3/12@5`` → (``resid_3/12``, 5); ``resid_3/12`` → (``resid_3/12``, None)."""
    head, sep, tail = ref.rpartition("@")
    if sep and re.fullmatch(r"-?\d+", tail):
        return head, int(tail)
    return ref, None


def node_label(node_id: str, position: int) -> str:
    """How results name a node instance: ``node_id``, or ``node_id@position`` when positions are kept."""
    return node_id if position is None or position < 0 else f"{node_id}@{position}"


def conform(frame: pl.DataFrame, query: Query) -> pl.DataFrame:
    """Exactly the declared columns, in order, with the declared dtypes (also when there are no rows)."""
    schema = query.schema
    if frame.height == 0:
        return pl.DataFrame(schema=schema)
    missing = [c for c in schema if c not in frame.columns]
    if missing:
        raise QueryError(f"query {query.name} returned no column {missing[0]!r}; the library file is out of step")
    return frame.select([pl.col(c).cast(t) for c, t in schema.items()])


__all__ = ["Query", "Param", "Column", "all_queries", "get_query", "run_query", "check_params", "node_label",
           "split_node_ref"]
