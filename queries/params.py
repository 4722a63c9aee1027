"""Parameter typing of the query library: the declared types, and checking a user's values against them.

Values are checked here without a store; :mod:`sfc_graph.queries.runner` then checks ids against the store.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import polars as pl

from ..bundle import NODE_KINDS  # the kinds a `kind` parameter accepts: those a bundle may hold
from ..errors import QueryError

if TYPE_CHECKING:  # pragma: no cover
    from polars._typing import PolarsDataType

    from .library import Param, Query

PARAM_TYPES = ("str", "int", "float", "bool", "list[str]", "circuit", "list[circuit]", "list[task]", "feature",
               "kind", "node")
COLUMN_TYPES: dict[str, PolarsDataType] = {
    "str": pl.String,
    "int": pl.Int64,
    "float": pl.Float64,
    "bool": pl.Boolean,
    "list[str]": pl.List(pl.String),
    "list[float]": pl.List(pl.Float64),
    "list[int]": pl.List(pl.Int64),
}
STRING_TYPES = ("str", "circuit", "feature", "kind", "node")
LIST_TYPES = ("list[str]", "list[circuit]", "list[task]")

def check_params(query: "Query", params: dict[str, Any]) -> dict[str, Any]:
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


def _check_value(query: "Query", p: "Param", value: Any) -> Any:
    def bad(expected: str) -> QueryError:
        return QueryError(f"query {query.name}: parameter {p.name!r} must be {expected}, got {value!r}")

    if value is None:
        if p.nullable or p.name in query.one_of:
            return None
        raise bad(f"a {p.type} (it cannot be null)")
    if p.type in STRING_TYPES:
        if not isinstance(value, str) or not value:
            raise bad("a non-empty string")
        if p.type == "kind" and value not in NODE_KINDS:
            raise bad(f"one of {', '.join(NODE_KINDS)}")
        return value
    if p.type in LIST_TYPES:
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
