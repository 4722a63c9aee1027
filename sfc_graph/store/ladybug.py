"""The embedded backend: LadybugDB (the maintained fork of Kùzu), one database file in a store directory.

Loads go through ``COPY … FROM`` polars tables inside one explicit transaction per circuit: a failure, or a
SIGKILL, leaves the previous state (LadybugDB's WAL discards an uncommitted transaction on recovery).
Two engine quirks shape this module, both observed with ladybug 0.22.0: a ``COPY`` into a table whose
transaction was rolled back in the same ``Database`` object crashes the process, so after a rollback the
database is reopened; and a ``COPY`` that repeats a primary key crashes too, so the shared algorithm only
ever hands us new shared nodes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Iterable, Iterator

import polars as pl

from ..errors import QueryError, StoreError
from ..graph import ANNOTATION_LABELS, NODE_LABELS, REL_TYPES, CircuitRows
from .base import BaseStore, Progress

log = logging.getLogger(__name__)

DB_FILE = "graph.lbdb"
MARKER_FILE = "sfc-store.json"
STORE_FORMAT = 1


def schema_ddl() -> list[str]:
    """``CREATE … TABLE`` statements for the schema of :mod:`sfc_graph.graph` (LadybugDB needs typed tables)."""
    ddl = []
    for label in NODE_LABELS + ANNOTATION_LABELS:
        props = ", ".join(f"{name} {kind}" for name, kind in label.properties)
        ddl.append(f"CREATE NODE TABLE IF NOT EXISTS {label.name}({props}, PRIMARY KEY({label.key}))")
    for rel in REL_TYPES:
        parts = [f"FROM {a} TO {b}" for a, b in rel.endpoints] + [f"{n} {t}" for n, t in rel.properties]
        ddl.append(f"CREATE REL TABLE IF NOT EXISTS {rel.name}({', '.join(parts)})")
    return ddl


class LadybugStore(BaseStore):
    """A circuit store in a local directory."""

    backend = "ladybug"
    dialect = "ladybug"

    def __init__(self, path: str | os.PathLike[str], *, read_only: bool = False, create: bool = True):
        import ladybug

        self._ladybug = ladybug
        self.path = Path(path)
        self.read_only = read_only
        if self.path.exists() and not self.path.is_dir():
            raise StoreError(f"{self.path} is a file; an embedded store is a directory (give a new or existing store directory)")
        marker = self.path / MARKER_FILE
        if not marker.exists():
            if not create or read_only:
                raise StoreError(f"no circuit store at {self.path}; create one with `sfc load BUNDLE --store {self.path}`")
            if self.path.exists() and any(self.path.iterdir()):
                raise StoreError(f"{self.path} is a non-empty directory that is not a circuit store; choose another --store")
            self.path.mkdir(parents=True, exist_ok=True)
            marker.write_text(json.dumps({"format": STORE_FORMAT, "engine": "ladybug", "schema": "sfc-graph/1"}) + "\n")
        self._open()
        if not read_only:
            for ddl in schema_ddl():
                self._conn.execute(ddl)

    def _open(self) -> None:
        try:
            self._db = self._ladybug.Database(str(self.path / DB_FILE), read_only=self.read_only)
            self._conn = self._ladybug.Connection(self._db)
        except RuntimeError as exc:
            raise StoreError(f"cannot open the store at {self.path}: {_first_line(exc)}") from None

    def close(self) -> None:
        if getattr(self, "_conn", None) is not None:
            self._conn.close()
            self._db.close()
            self._conn = self._db = None

    def run(self, cypher: str, params: dict[str, Any] | None = None) -> pl.DataFrame:
        try:
            result = self._conn.execute(cypher, params or {})
            frame = result.get_as_pl()
        except RuntimeError as exc:
            raise QueryError(f"the embedded store refused the query: {_first_line(exc)}") from None
        return frame

    def _write_rows(self, rows: CircuitRows, progress: Progress | None) -> None:
        steps: list[tuple[str, pl.DataFrame, str]] = []
        # Shared nodes first, the Circuit row last among nodes; relationships after all their endpoints.
        for label in NODE_LABELS:
            steps.append((label.name, rows.nodes[label.name], ""))
        for (name, src, dst), frame in rows.rels.items():
            steps.append((name, frame, f" (from='{src}', to='{dst}')"))
        total = sum(frame.height for _, frame, _ in steps)
        done = 0
        with self._transaction():
            for table, frame, options in steps:
                if frame.height == 0:
                    continue
                self._copy(table, frame, options)
                done += frame.height
                if progress:
                    progress(done, total)

    def _copy(self, table: str, frame: pl.DataFrame, options: str) -> None:
        self._conn.execute(f"COPY {table} FROM $rows{options}", {"rows": frame})

    def _run_in_transaction(self, cypher: Iterable[str], params: dict[str, Any]) -> None:
        with self._transaction():
            for text in cypher:
                used = {k: v for k, v in params.items() if f"${k}" in text}
                self._conn.execute(text, used)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        if self.read_only:
            raise StoreError(f"the store at {self.path} is open read-only")
        self._conn.execute("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            try:
                self._conn.execute("ROLLBACK")
            finally:
                # See the module docstring: never COPY again into a Database object after a rollback.
                self.close()
                self._open()
            raise
        self._conn.execute("COMMIT")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
