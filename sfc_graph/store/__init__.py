"""The circuit store: one protocol, two backends (embedded LadybugDB, Neo4j), one algorithm above them."""

from __future__ import annotations

import os
from typing import Any, Protocol, runtime_checkable

import polars as pl

from ..bundle import Bundle
from .base import BaseStore, LoadResult, Progress

NEO4J_SCHEMES = ("bolt://", "bolt+s://", "bolt+ssc://", "neo4j://", "neo4j+s://", "neo4j+ssc://")


@runtime_checkable
class CircuitStore(Protocol):
    """What every backend offers. Results are polars DataFrames."""

    backend: str
    dialect: str

    def load(self, bundle: Bundle | str | os.PathLike[str], *, progress: Progress | None = None) -> LoadResult: ...
    def delete(self, circuit_id: str) -> dict[str, int]: ...
    def has_circuit(self, circuit_id: str) -> bool: ...
    def circuits(self) -> pl.DataFrame: ...
    def stats(self) -> pl.DataFrame: ...
    def read_circuit(self, circuit_id: str) -> Bundle: ...
    def run(self, cypher: str, params: dict[str, Any] | None = None) -> pl.DataFrame: ...
    def query(self, name: str, **params: Any) -> pl.DataFrame: ...
    def close(self) -> None: ...


def is_neo4j_uri(spec: str) -> bool:
    return str(spec).startswith(NEO4J_SCHEMES)


def open_store(
    spec: str | os.PathLike[str],
    *,
    read_only: bool = False,
    create: bool = True,
    user: str | None = None,
    password: str | None = None,
    database: str | None = None,
) -> BaseStore:
    """Open the store named by ``spec``: a directory (embedded LadybugDB) or a Neo4j URI.

    Neo4j credentials come from the arguments or from ``SFC_NEO4J_USER``, ``SFC_NEO4J_PASSWORD`` and
    ``SFC_NEO4J_DATABASE``; they are never logged.
    """
    if is_neo4j_uri(str(spec)):
        from .neo4j import Neo4jStore

        return Neo4jStore(
            str(spec),
            user=user or os.environ.get("SFC_NEO4J_USER", "neo4j"),
            password=password if password is not None else os.environ.get("SFC_NEO4J_PASSWORD"),
            database=database or os.environ.get("SFC_NEO4J_DATABASE") or None,
            read_only=read_only,
        )
    from .ladybug import LadybugStore

    return LadybugStore(spec, read_only=read_only, create=create)


__all__ = ["CircuitStore", "LoadResult", "Progress", "open_store", "is_neo4j_uri", "BaseStore"]
