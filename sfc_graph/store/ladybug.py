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
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import polars as pl

from ..errors import QueryError, StoreError
from ..graph import ANNOTATION_LABELS, NODE_LABELS, REL_TYPES, CircuitRows
from .base import BaseStore, Progress
from .ladybug_health import (
    DB_FILE,
    MARKER_FILE,
    check_database_file,
    engine_error,
    is_lock_held,
    is_post_commit_failure,
    is_recovery_pending,
    lost_data,
    read_marker,
    unfinished_creation,
    write_marker,
)
from .read_only import ladybug_plan, ladybug_plan_verdict, require_bound

log = logging.getLogger(__name__)

RECOVERY_WAIT_S = 10.0  # how long a reader waits for another process's checkpoint before giving up
# ladybug 0.22 keeps about 15 MB for every COPY from a Python object (polars, arrow or pandas alike; kuzudb/kuzu
# issue 5779), however few its rows, until the Database closes: a process that loads circuit after circuit
# (`sfc discover`, a long `sfc load`) grew by 1 GB every ~16 small circuits until the kernel killed it. After
# this many COPYs the store reopens its database between writes, which hands the memory back.
REOPEN_AFTER_COPIES = 64


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


def _schema_table_names() -> list[str]:
    """The table each statement of :func:`schema_ddl` creates, in the same order."""
    return [label.name for label in NODE_LABELS + ANNOTATION_LABELS] + [rel.name for rel in REL_TYPES]


class LadybugStore(BaseStore):
    """A circuit store in a local directory."""

    backend = "ladybug"
    dialect = "ladybug"
    reopen_after_copies = REOPEN_AFTER_COPIES
    _copies_since_open = 0
    # ladybug's Database / Connection; its execute() is typed "one result or a list", we send one statement.
    _db: Any
    _conn: Any

    def __init__(self, path: str | os.PathLike[str], *, read_only: bool = False, create: bool = True):
        import ladybug

        self._ladybug = ladybug
        self.path = Path(path)
        self.read_only = read_only
        if self.path.exists() and not self.path.is_dir():
            raise StoreError(f"{self.path} is a file; an embedded store is a directory (give a new or existing store directory)")
        # Identity and health before the engine touches anything: a marked store must still have its data.
        marked = (self.path / MARKER_FILE).exists() or (self.path / MARKER_FILE).is_symlink()
        if marked:
            read_marker(self.path)
            check_database_file(self.path)
        else:
            if not create or read_only:
                raise StoreError(f"no circuit store at {self.path}; create one with `sfc load BUNDLE --store {self.path}`")
            if self.path.exists() and any(self.path.iterdir()) and not unfinished_creation(self.path):
                raise StoreError(f"{self.path} is a non-empty directory that is not a circuit store; choose another --store")
            try:
                self.path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the store at {self.path}: {exc.strerror or exc}") from None
        self._open()
        try:
            self._check_tables(new=not marked)
            if read_only and marked:
                self._add_missing_tables()
            if not read_only:
                for ddl in schema_ddl():
                    self._execute(ddl, doing="create the tables of")
            if not marked:
                write_marker(self.path)  # last: a marker means the tables were there
        except OSError as exc:
            self.close()
            raise StoreError(f"cannot create the store at {self.path}: {exc.strerror or exc}") from None
        except BaseException:
            self.close()
            raise

    def _check_tables(self, *, new: bool) -> None:
        """A store that once had its tables must still have them; a new one must not hold circuits."""
        tables = set(self._conn.execute("CALL show_tables() RETURN name").get_as_pl()["name"].to_list())
        if new:
            if "Circuit" in tables and self._conn.execute("MATCH (c:Circuit) RETURN count(c)").get_as_pl().item():
                raise StoreError(f"{self.path} holds a circuit database but no {MARKER_FILE}; it is not a store this "
                                 "sfc-graph created (or its marker was deleted): choose another --store")
            return
        if "Circuit" not in tables:
            what = "its database holds none of the store's tables" if not tables else \
                "its database has lost the Circuit table"
            raise lost_data(self.path, f"{what} (the file {DB_FILE} was truncated, overwritten or replaced)")

    def _add_missing_tables(self) -> None:
        """A store made by an earlier sfc-graph lacks tables added to the schema since (``FeatureInfo``): add
        them, empty, so that read-only commands can run the queries that mention them. Only adds empty tables;
        when the store cannot be written now (another process writes, no permission) the reader goes on without
        them and the queries that need them say so."""
        found = self._conn.execute("CALL show_tables() RETURN name")
        assert not isinstance(found, list)  # one statement, one result
        tables = set(found.get_as_pl()["name"].to_list())
        missing = [ddl for ddl, name in zip(schema_ddl(), _schema_table_names()) if name not in tables]
        if not missing:
            return
        self.close()
        try:
            self._connect(read_only=False)
            for ddl in missing:
                self._conn.execute(ddl)
            log.info("added %d table(s) of a newer schema to the store at %s", len(missing), self.path)
        except RuntimeError as exc:
            log.info("could not add the newer schema's tables to %s (%s); reading without them", self.path,
                     _first_line(exc))
        finally:
            self.close()
            self._connect(read_only=True)

    def _execute(self, cypher: str, params: dict[str, Any] | None = None, *, doing: str = "write to"):
        try:
            return self._conn.execute(cypher, params or {})
        except RuntimeError as exc:
            raise engine_error(exc, self.path, doing=doing) from None

    def _open(self) -> None:
        try:
            self._connect(read_only=self.read_only)
        except RuntimeError as exc:
            if self.read_only and is_recovery_pending(exc):
                self._recover_then_open()
                return
            raise engine_error(exc, self.path, doing="open") from None

    def _connect(self, *, read_only: bool) -> None:
        self._db = self._ladybug.Database(str(self.path / DB_FILE), read_only=read_only)
        self._conn = self._ladybug.Connection(self._db)
        self._copies_since_open = 0

    def _release_copy_memory(self) -> None:
        """Reopen the database once enough COPYs have accumulated (see REOPEN_AFTER_COPIES), between writes."""
        if self._copies_since_open < self.reopen_after_copies:
            return
        self.close()
        deadline = time.monotonic() + RECOVERY_WAIT_S
        while True:  # another process may take the lock in the moment it is free: wait for it, as a reader does
            try:
                self._connect(read_only=self.read_only)
                break
            except RuntimeError as exc:
                self.close()
                if not is_lock_held(exc) or time.monotonic() > deadline:
                    error = engine_error(exc, self.path, doing="reopen")
                    raise type(error)(f"{error}; every circuit written so far is kept (loading again skips "
                                      "them)") from None
                time.sleep(0.2)
        _trim_freed_memory()

    def _recover_then_open(self) -> None:
        """A reader found a checkpoint to finish. If no process holds the write lock, a write that was
        interrupted (killed, full disk) left it: open read-write once, which finishes it, so that readers are
        never locked out until some write command runs. If another process holds the lock it is
        checkpointing right now: wait for it. If the checkpoint cannot finish (the disk is still full), read
        through the read-write handle; ``self.read_only`` still refuses every write of ours."""
        deadline = time.monotonic() + RECOVERY_WAIT_S
        while True:
            try:
                self._connect(read_only=False)  # recovery runs on open
                break
            except RuntimeError as exc:
                self.close()
                if not is_lock_held(exc) or time.monotonic() > deadline:
                    raise engine_error(exc, self.path, doing="open") from None
            time.sleep(0.2)  # another process is writing: its checkpoint ends, then a reader may open
            try:
                self._connect(read_only=True)
                return
            except RuntimeError as exc:
                self.close()
                if not is_recovery_pending(exc):
                    raise engine_error(exc, self.path, doing="open") from None
        self.close()
        try:
            self._connect(read_only=True)
            log.info("finished an interrupted checkpoint of the store at %s", self.path)
            return
        except RuntimeError as exc:
            self.close()
            if not is_recovery_pending(exc):
                raise engine_error(exc, self.path, doing="open") from None
        try:
            self._connect(read_only=False)
        except RuntimeError as exc:
            self.close()
            raise engine_error(exc, self.path, doing="open") from None
        log.warning("the store at %s has a checkpoint that cannot finish yet (is the disk full?); reading it "
                    "through a read-write handle", self.path)

    def close(self) -> None:
        conn, db = getattr(self, "_conn", None), getattr(self, "_db", None)
        self._conn = self._db = None
        if conn is not None:
            conn.close()
        if db is not None:
            db.close()

    def run(self, cypher: str, params: dict[str, Any] | None = None) -> pl.DataFrame:
        if self._conn is None:
            raise StoreError(f"the store at {self.path} is closed")
        require_bound(cypher, params)  # the engine would run it and answer "no rows"
        try:
            result = self._conn.execute(cypher, params or {})
            frame = result.get_as_pl()
        except RuntimeError as exc:
            if is_lock_held(exc) or "IO exception" in str(exc):
                raise engine_error(exc, self.path, doing="read") from None
            raise QueryError(f"the embedded store refused the query: {_first_line(exc)}") from None
        except (TypeError, ValueError, OverflowError) as exc:  # a parameter the engine cannot bind (-p k 1e29)
            raise QueryError(f"the embedded store cannot take a parameter of this query: {_first_line(exc)}") from None
        return frame

    def check_read_only(self, cypher: str, params: dict[str, Any] | None = None) -> None:
        """The engine's verdict: every operator of the statement's plan only reads the database."""
        if self._conn is None:
            raise StoreError(f"the store at {self.path} is closed")
        require_bound(cypher, params)
        try:
            plan = ladybug_plan(self._conn, cypher, params)
        except RuntimeError as exc:
            raise QueryError(f"the embedded store refused the query: {_first_line(exc)}") from None
        operator = ladybug_plan_verdict(plan)
        if operator:
            raise QueryError(f"refused: the engine plans this statement with {operator}, which is not a read of "
                             "the store (read-only Cypher may not write, read files or load extensions)")

    def _write_rows(self, rows: CircuitRows, progress: Progress | None) -> None:
        steps: list[tuple[str, pl.DataFrame, str]] = []
        # Shared nodes first, the Circuit row last among nodes; relationships after all their endpoints.
        for label in NODE_LABELS:
            steps.append((label.name, rows.nodes[label.name], ""))
        for (name, src, dst), frame in rows.rels.items():
            steps.append((name, frame, f" (from='{src}', to='{dst}')"))
        total = sum(frame.height for _, frame, _ in steps)
        done = 0
        circuit_ids = rows.nodes["Circuit"]["id"].to_list() if "Circuit" in rows.nodes else []
        with self._transaction(verify=lambda: all(self.has_circuit(c) for c in circuit_ids)):
            for table, frame, options in steps:
                if frame.height == 0:
                    continue
                self._copy(table, frame, options)
                done += frame.height
                if progress:
                    progress(done, total)
        self._release_copy_memory()

    def _copy(self, table: str, frame: pl.DataFrame, options: str) -> None:
        self._copies_since_open += 1
        self._conn.execute(f"COPY {table} FROM $rows{options}", {"rows": frame})

    def _run_in_transaction(self, cypher: Iterable[str], params: dict[str, Any]) -> None:
        with self._transaction():
            for text in cypher:
                used = {k: v for k, v in params.items() if f"${k}" in text}
                self._conn.execute(text, used)

    @contextlib.contextmanager
    def _transaction(self, verify: Callable[[], bool] | None = None) -> Iterator[None]:
        """All of the block or none of it. ``verify()`` says whether the block's writes are in the store; it
        settles the one ambiguous failure, a commit whose checkpoint failed (e.g. on a full disk)."""
        if self.read_only:
            raise StoreError(f"the store at {self.path} is open read-only")
        try:
            self._conn.execute("BEGIN TRANSACTION")
        except RuntimeError as exc:
            error = engine_error(exc, self.path, doing="write to")
            raise type(error)(f"{error}; nothing of this write was kept, the store holds what it held before") from None
        try:
            yield
            self._conn.execute("COMMIT")
        except BaseException as exc:
            committed = is_post_commit_failure(exc)
            if not committed:
                with contextlib.suppress(RuntimeError):
                    self._conn.execute("ROLLBACK")
            # See the module docstring: never COPY again into a Database object after a rollback. Reopening
            # read-write also finishes a checkpoint the failure left pending, so readers are not locked out.
            self.close()
            try:
                self._open()
            except StoreError as reopen_error:
                log.warning("could not reopen the store after a failed write: %s", reopen_error)
            if committed and verify is not None and self._conn is not None:
                if verify():
                    log.warning("the store at %s committed the write but its checkpoint failed; recovery "
                                "completed it (%s)", self.path, _first_line(exc))
                    return
            if isinstance(exc, RuntimeError):
                error = engine_error(exc, self.path, doing="write to")
                kept = ("nothing of this write was kept, the store holds what it held before" if not committed
                        or verify is not None else "check with `sfc circuits` whether this write was kept")
                raise type(error)(f"{error}; {kept}") from None
            raise


def _trim_freed_memory() -> None:
    """Hand memory the engine freed back to the OS (glibc keeps it in its arenas otherwise); a no-op elsewhere."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c") if sys.platform.startswith("linux") else None  # malloc_trim: glibc
    if not name:
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(name).malloc_trim(0)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
