"""Running a named query: check its parameters, resolve ids against the store, run its statements, apply
its ``post`` step, and return exactly its declared columns."""

from __future__ import annotations

import re
from typing import Any

import polars as pl

from .. import naming
from ..errors import CircuitNotFound, QueryError
from .library import Query, get_query, internal_statement
from .params import LIST_TYPES, check_params

_PARAM_REF = re.compile(r"\$(\w+)")


def run_query(store, name: str, params: dict[str, Any] | None = None) -> pl.DataFrame:
    """Run the named query on ``store``: check and complete ``params``, run the Cypher, post-process.

    Returns exactly the declared columns, in order, with the declared dtypes.
    """
    query = get_query(name)
    values = check_params(query, dict(params or {}))
    cypher_values = resolve_in_store(store, query, values)
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


def resolve_in_store(store, query: Query, values: dict[str, Any]) -> dict[str, Any]:
    """Check ids against the store; ``node`` values become lists of CircuitNode uids.

    Optional list parameters left out reach the Cypher as empty lists, so that statements can test them
    with ``IN`` on both backends (a null parameter has no type in LadybugDB).
    """
    resolved = dict(values)
    for p in query.params:
        value = values[p.name]
        if value is None:
            if p.type in LIST_TYPES:
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
    node_id, position = naming.parse_node_key(ref)
    found = store.run(internal_statement("node-instances"), {"circuit": circuit, "node_id": node_id})
    if position is not None and found.height:
        found = found.filter(pl.col("position") == position)
    if found.height == 0:
        where = f" at position {position}" if position is not None else ""
        raise QueryError(f"no node {node_id!r}{where} in circuit {circuit!r}")
    return found.sort("position")["uid"].to_list()


def conform(frame: pl.DataFrame, query: Query) -> pl.DataFrame:
    """Exactly the declared columns, in order, with the declared dtypes (also when there are no rows)."""
    schema = query.schema
    if frame.height == 0:
        return pl.DataFrame(schema=schema)
    missing = [c for c in schema if c not in frame.columns]
    if missing:
        raise QueryError(f"query {query.name} returned no column {missing[0]!r}; the library file is out of step")
    return frame.select([pl.col(c).cast(t) for c, t in schema.items()])
