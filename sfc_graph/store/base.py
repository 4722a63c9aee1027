"""The one algorithm every backend shares: loading, deleting, listing and reading circuits.

A backend supplies four primitives — :meth:`run` (a read), :meth:`_write_rows` (one circuit's rows in one
transaction), :meth:`_run_in_transaction` (several statements atomically) and :meth:`close` — and
everything else happens here, identically for both.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import polars as pl

from ..bundle import EDGE_COLUMNS, NODE_COLUMNS, Bundle, read_bundle, read_manifest
from ..errors import CircuitNotFound
from ..graph import LABELS, NODE_LABELS, REL_TYPES, CircuitRows, circuit_rows, merge_rows, shared_rel_owner
from .statements import statement, statements

if TYPE_CHECKING:  # pragma: no cover
    from polars._typing import PolarsDataType

log = logging.getLogger(__name__)

# progress(done_rows, total_rows): the CLI draws a bar with it.
GROUP_ROWS = 1_000_000  # rows per transaction when loading many small circuits (load_many)
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class LoadResult:
    circuit_id: str
    loaded: bool  # False: the circuit was already in the store and nothing was written
    n_nodes: int = 0
    n_edges: int = 0
    source: str | None = None


class BaseStore:
    """Shared behaviour of :class:`~sfc_graph.store.CircuitStore` implementations."""

    backend: str = "?"
    dialect: str = "portable"

    # --- primitives each backend provides -------------------------------------------------------------
    def run(self, cypher: str, params: dict[str, Any] | None = None) -> pl.DataFrame:  # pragma: no cover
        raise NotImplementedError

    def _write_rows(self, rows: CircuitRows, progress: Progress | None) -> None:  # pragma: no cover
        raise NotImplementedError

    def _run_in_transaction(self, cypher: Iterable[str], params: dict[str, Any]) -> None:  # pragma: no cover
        raise NotImplementedError

    def close(self) -> None:  # pragma: no cover
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- the shared algorithm --------------------------------------------------------------------------
    def has_circuit(self, circuit_id: str) -> bool:
        return self.run(statement("circuit-exists"), {"circuit": circuit_id}).height > 0

    def load(self, bundle: Bundle | str | os.PathLike[str], *, progress: Progress | None = None) -> LoadResult:
        """Load one bundle: all of it in one transaction, or nothing if the circuit is already there."""
        if not isinstance(bundle, Bundle):
            # A circuit already stored is known from its manifest alone: skip before reading the tables.
            circuit_id = read_manifest(bundle)["circuit_id"]
            if self.has_circuit(circuit_id):
                log.info("circuit %s already in the store; skipped", circuit_id)
                return LoadResult(circuit_id, loaded=False, source=str(bundle))
            bundle = read_bundle(bundle)
        (result,) = self.load_many([bundle], progress=progress)
        return result

    def load_many(
        self, bundles: Iterable[Bundle], *, group_rows: int = GROUP_ROWS, progress: Progress | None = None
    ) -> list[LoadResult]:
        """Load several bundles, writing small ones together in one transaction per group of about
        ``group_rows`` rows. Each circuit still lands whole or not at all; a group only saves the engine's
        per-commit cost (LadybugDB checkpoints at every commit: most of a small circuit's load time).
        """
        results: dict[int, LoadResult] = {}
        group: dict[int, Bundle] = {}
        pending: set[str] = set()

        def flush() -> None:
            if group:
                rows = merge_rows([circuit_rows(b) for b in group.values()])
                self._write_rows(self._only_new_shared_nodes(rows), progress)
                for i, b in group.items():
                    results[i] = LoadResult(b.circuit_id, True, b.nodes.height, b.edges.height, _source(b))
                    log.info("loaded circuit %s (%d nodes, %d edges)", b.circuit_id, b.nodes.height, b.edges.height)
                group.clear()

        for i, bundle in enumerate(bundles):
            if bundle.circuit_id in pending or self.has_circuit(bundle.circuit_id):
                log.info("circuit %s already in the store; skipped", bundle.circuit_id)
                results[i] = LoadResult(bundle.circuit_id, False, source=_source(bundle))
                continue
            pending.add(bundle.circuit_id)
            group[i] = bundle
            if sum(b.nodes.height * 4 + b.edges.height for b in group.values()) >= group_rows:
                flush()
        flush()
        return [results[i] for i in sorted(results)]

    def delete(self, circuit_id: str) -> dict[str, int]:
        """Remove a circuit, its edges and memberships, the records about it (SHIFT interventions, its discovered
        behaviour) and the shared nodes no other circuit uses. Returns how many records of each kind went."""
        self.require_circuit(circuit_id)
        records = self.run(statement("circuit-records"), {"circuit": circuit_id}).row(0, named=True)
        self._run_in_transaction(statements("delete-circuit"), {"circuit": circuit_id})
        return {kind: int(count or 0) for kind, count in records.items()}

    def require_circuit(self, circuit_id: str) -> None:
        if not self.has_circuit(circuit_id):
            known = self.run(statement("list-circuits"))["id"].to_list()
            hint = f"; known circuits: {', '.join(known[:5])}{' …' if len(known) > 5 else ''}" if known else \
                "; the store is empty"
            raise CircuitNotFound(f"no circuit {circuit_id!r} in the store{hint}")

    def circuits(self) -> pl.DataFrame:
        """One row per circuit: id, task, model, method, n_nodes, n_edges, created_at."""
        return self.run(statement("list-circuits"))

    def stats(self) -> pl.DataFrame:
        """Counts per node label and relationship type (zero included)."""
        found = self.run(statement("stats"))
        counts = {(r["what"], r["name"]): r["count"] for r in found.iter_rows(named=True)}
        expected = [("node", label.name) for label in NODE_LABELS] + [("relationship", r.name) for r in REL_TYPES]
        return pl.DataFrame(
            {"what": [w for w, _ in expected], "name": [n for _, n in expected],
             "count": [int(counts.get(key) or 0) for key in expected]},
            schema={"what": pl.String, "name": pl.String, "count": pl.Int64},
        )

    def manifest(self, circuit_id: str) -> dict[str, Any]:
        """The manifest the circuit was loaded with (evaluation, settings, dictionaries …)."""
        found = self.run(statement("circuit-manifest"), {"circuit": circuit_id})
        if found.height == 0:
            self.require_circuit(circuit_id)
        return json.loads(found["manifest"][0])

    def read_circuit(self, circuit_id: str) -> Bundle:
        """The circuit as a bundle (manifest, nodes, edges), read back from the graph."""
        manifest = self.manifest(circuit_id)
        nodes = self.run(statement("circuit-nodes"), {"circuit": circuit_id}).rename({"latent": "index"}, strict=False)
        edges = self.run(statement("circuit-edges"), {"circuit": circuit_id})
        nodes = _typed(nodes, NODE_COLUMNS, extra=["feature", "identity", *_filled(nodes, OPTIONAL_NODE_COLUMNS)])
        edges = _typed(edges, EDGE_COLUMNS, extra=_filled(edges, OPTIONAL_EDGE_COLUMNS))
        nodes = nodes.sort("node_id", "position")
        edges = edges.sort("src", "src_position", "dst", "dst_position")
        return Bundle(manifest=manifest, nodes=nodes, edges=edges)

    def run_read_only(self, cypher: str, params: dict[str, Any] | None = None) -> pl.DataFrame:
        """Run Cypher from a user (a shell, a browser) that must not change anything or touch files.

        Two fences: the engine's own verdict on the statement (:meth:`check_read_only`: LadybugDB's plan,
        Neo4j's read transaction and query type), then the keyword filter of
        :func:`sfc_graph.store.read_only.write_clause`. Either refuses with a :class:`QueryError`.
        """
        from .read_only import refuse_write_clause

        self.check_read_only(cypher, params)
        refuse_write_clause(cypher)
        return self.run(cypher, params)

    def check_read_only(self, cypher: str, params: dict[str, Any] | None = None) -> None:  # pragma: no cover
        raise NotImplementedError

    def query(self, name: str, **params: Any) -> pl.DataFrame:
        """Run a named query from the library in ``queries/`` with ``params``."""
        from ..queries import run_query

        return run_query(self, name, params)

    def to_networkx(self, circuit_id: str, *, node_threshold: float = 0.0, edge_threshold: float = 0.0):
        """The circuit as a :class:`networkx.DiGraph` (see :mod:`sfc_graph.export`)."""
        from ..export import circuit_to_networkx

        return circuit_to_networkx(self, circuit_id, node_threshold=node_threshold, edge_threshold=edge_threshold)

    # --- helpers -----------------------------------------------------------------------------------------
    def _only_new_shared_nodes(self, rows: CircuitRows) -> CircuitRows:
        """Drop shared nodes (and their OF_MODEL/IN_DICTIONARY links) that the store already has."""
        shared = [label for label in NODE_LABELS if label.shared]
        existing_statements = statements("existing-keys")
        assert len(existing_statements) == len(shared), "existing-keys.cypher out of step with the schema"
        nodes = dict(rows.nodes)
        for label, cypher in zip(shared, existing_statements):
            frame = nodes[label.name]
            if frame.height == 0:
                continue
            have = self._existing_keys(label.name, cypher, frame[label.key], rows.nodes["Dictionary"]["id"])
            if have.len():
                nodes[label.name] = frame.filter(~pl.col(label.key).is_in(have.implode()))
        rels = {}
        for key, frame in rows.rels.items():
            owner = shared_rel_owner(key)
            if owner is not None:
                frame = frame.filter(pl.col("from").is_in(nodes[owner][LABELS[owner].key].implode()))
            rels[key] = frame
        return CircuitRows(rows.circuit_id, nodes, rels)

    def _existing_keys(self, label: str, lookup: str, keys: pl.Series, dictionaries: pl.Series) -> pl.Series:
        """Which of ``keys`` the store has: a key lookup each, or one scan when the store holds fewer."""
        if label == "Feature":
            scan, count = statements("features-of-dictionaries")
            if int(self.run(count)["count"][0]) < keys.len():
                return _key_column(self.run(scan, {"dictionaries": dictionaries.to_list()}))
        return _key_column(self.run(lookup, {"keys": keys.to_list()}))


def _source(bundle: Bundle) -> str | None:
    return str(bundle.path) if bundle.path else None


def _key_column(found: pl.DataFrame) -> pl.Series:
    return found["key"] if found.height else pl.Series("key", [], dtype=pl.String)


# Columns only some methods fill (transcoder-paths: activations, input-invariant weights); read back only where a
# circuit has them, so that the others come back exactly as they were written.
OPTIONAL_NODE_COLUMNS = ("activation",)
OPTIONAL_EDGE_COLUMNS = ("weight_invariant",)


def _filled(frame: pl.DataFrame, columns: Sequence[str]) -> list[str]:
    return [c for c in columns if c in frame.columns and frame[c].null_count() < frame.height]


def _typed(frame: pl.DataFrame, columns: dict[str, PolarsDataType], extra: Sequence[str] = ()) -> pl.DataFrame:
    if frame.height == 0 and not frame.columns:
        return pl.DataFrame(schema={**columns, **{c: pl.String for c in extra}})
    return frame.select([pl.col(c).cast(t) for c, t in columns.items()] + [pl.col(c) for c in extra])
