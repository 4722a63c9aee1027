"""The Neo4j backend: Neo4j 5 through the official ``neo4j`` driver (``bolt://``, ``neo4j://``, ``+s``/``+ssc``).

Schema first: one uniqueness constraint per label key of :mod:`sfc_graph.graph` and an index on every other
property a statement matches on. A circuit is written in ONE managed write transaction as a series of
``UNWIND $rows AS row …`` statements, 20k rows a batch: shared nodes (and their links to other shared nodes)
with ``MERGE``, so two loaders racing on the same features still create each once; the circuit's own
nodes and relationships with ``CREATE``. An exception anywhere — ours, the progress callback's, the
server's — rolls the whole transaction back, and a client killed mid-load leaves a transaction the server
discards when the connection drops. A store opened read-only runs everything in read transactions.

Every statement text is static (built once, at import, from the schema constants, or read from the
``.cypher`` files), values travel as ``$parameters`` only, and :func:`neo4j_statements` lists them all so
that CI can lint each with the official Cypher linter (``tools/cypher-lint``).

Credentials never appear in logs or in exception text; an exception names the server by
``scheme://host:port`` only.
"""

from __future__ import annotations

import logging
import re
from importlib import resources
from typing import Any, Callable, Iterable
from urllib.parse import urlsplit

import polars as pl

from ..errors import QueryError, StoreError, StoreUnavailable
from ..graph import ANNOTATION_LABELS, LABELS, NODE_LABELS, REL_TYPES, CircuitRows, shared_rel_owner
from . import statements as _store_statements
from .base import BaseStore, Progress

log = logging.getLogger(__name__)
# The driver logs connection failures at WARNING/ERROR; with no handler configured, Python's last-resort
# handler would print them on stderr next to our own one-sentence error. A NullHandler keeps them quiet
# unless the application configures logging (they still propagate to the root logger then).
logging.getLogger("neo4j").addHandler(logging.NullHandler())


def _not_routing_failure(record: logging.LogRecord) -> bool:
    # The pool logs this at ERROR just before raising the ServiceUnavailable we turn into one sentence;
    # with the CLI's logging on, it would print a second, vaguer line.
    return record.getMessage() != "Unable to retrieve routing information"


logging.getLogger("neo4j.pool").addFilter(_not_routing_failure)

BATCH_ROWS = 20_000
CONNECTION_TIMEOUT_S = 5.0  # a dead or unreachable server fails fast
# The Bolt handshake runs under this deadline: a server that accepts and never answers must fail about as
# fast as one that refuses (one session at a time, so a short wait for a pooled connection is enough).
ACQUISITION_TIMEOUT_S = CONNECTION_TIMEOUT_S + 1.0
MAX_RETRY_TIME_S = 15.0  # transient errors (e.g. deadlocks between concurrent loads) are retried this long

# Properties matched on besides the label keys (which have uniqueness constraints, and so indexes, of their
# own): Feature.dictionary by existing-keys.cypher, Circuit.task by shared-features; CircuitNode.circuit and
# Feature.layer for hand-written Cypher ("the layer-3 features of …", "the nodes of circuit …"). Kept short:
# every index on CircuitNode is paid per node on each load.
INDEXED_PROPERTIES: tuple[tuple[str, str], ...] = (
    ("Feature", "dictionary"),
    ("Feature", "layer"),
    ("Circuit", "task"),
    ("CircuitNode", "circuit"),
)

# Relationships between shared nodes are MERGEd like the nodes themselves.
_SHARED_RELS = {rel.name for rel in REL_TYPES if any(shared_rel_owner((rel.name, a, b)) for a, b in rel.endpoints)}


# --- statement texts, built once from the schema -------------------------------------------------------------
def _constraint_name(label: str, key: str) -> str:
    return f"sfc_{label.lower()}_{key}_unique"


def _index_name(label: str, prop: str) -> str:
    return f"sfc_{label.lower()}_{prop}"


def _schema_statements() -> dict[str, str]:
    out = {}
    for label in NODE_LABELS + ANNOTATION_LABELS:
        out[f"schema/constraint/{label.name}.{label.key}"] = (
            f"CREATE CONSTRAINT {_constraint_name(label.name, label.key)} IF NOT EXISTS "
            f"FOR (n:{label.name}) REQUIRE n.{label.key} IS UNIQUE"
        )
    for name, prop in INDEXED_PROPERTIES:
        assert prop in LABELS[name].columns, f"{name}.{prop} is not in the schema"
        out[f"schema/index/{name}.{prop}"] = (
            f"CREATE INDEX {_index_name(name, prop)} IF NOT EXISTS FOR (n:{name}) ON (n.{prop})"
        )
    return out


def _node_statements() -> dict[str, str]:
    out = {}
    for label in NODE_LABELS:
        if label.shared:
            # MERGE on the key alone (the constraint locks it), properties only when the node is new.
            text = (
                f"UNWIND $rows AS row\nMERGE (n:{label.name} {{{label.key}: row.{label.key}}})\n"
                "ON CREATE SET n += row\nRETURN count(*) AS written"
            )
        else:
            text = f"UNWIND $rows AS row\nCREATE (n:{label.name})\nSET n = row\nRETURN count(*) AS written"
        out[label.name] = text
    return out


def _rel_statements() -> dict[tuple[str, str, str], str]:
    out = {}
    for rel in REL_TYPES:
        props = ", ".join(f"{name}: row.{name}" for name in rel.columns)
        body = f"[:{rel.name} {{{props}}}]" if props else f"[:{rel.name}]"
        verb = "MERGE" if rel.name in _SHARED_RELS else "CREATE"
        for src, dst in rel.endpoints:
            out[(rel.name, src, dst)] = (
                "UNWIND $rows AS row\n"
                f"MATCH (a:{src} {{{LABELS[src].key}: row.from}})\n"
                f"MATCH (b:{dst} {{{LABELS[dst].key}: row.to}})\n"
                f"{verb} (a)-{body}->(b)\n"
                "RETURN count(*) AS written"
            )
    return out


SCHEMA_STATEMENTS: dict[str, str] = _schema_statements()
# What the database has already: opening a store whose schema exists then needs no schema privilege.
SHOW_SCHEMA_STATEMENTS: dict[str, str] = {
    "schema/show-constraints": "SHOW CONSTRAINTS YIELD name RETURN name",
    "schema/show-indexes": "SHOW INDEXES YIELD name RETURN name",
}
NODE_STATEMENTS: dict[str, str] = _node_statements()
REL_STATEMENTS: dict[tuple[str, str, str], str] = _rel_statements()
CLEAR_STATEMENT = "MATCH (n) DETACH DELETE n"

_PARAM = re.compile(r"\$(`[^`]+`|[A-Za-z_][A-Za-z0-9_]*)")


def _parameter_names(text: str) -> list[str]:
    names = [m.group(1).strip("`") for m in _PARAM.finditer(_strip_strings(text))]
    return list(dict.fromkeys(names))


def _strip_strings(text: str) -> str:
    return re.sub(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"", "''", text)


def neo4j_statements() -> list[dict[str, Any]]:
    """Every Cypher statement this backend can send, as ``{"name", "text", "params"}`` (for the linter).

    Schema DDL, the load statements, the store's own statements (``sfc_graph/store/cypher``), the
    test-database reset, and the Neo4j text of every query in the library (``queries/``) when it imports.
    """
    out: list[dict[str, Any]] = []

    def add(name: str, text: str, params: Iterable[str] = ()) -> None:
        out.append({"name": name, "text": text, "params": list(dict.fromkeys([*params, *_parameter_names(text)]))})

    for name, text in {**SHOW_SCHEMA_STATEMENTS, **SCHEMA_STATEMENTS}.items():
        add(name, text)
    for label, text in NODE_STATEMENTS.items():
        add(f"load/node/{label}", text)
    for (rel, src, dst), text in REL_STATEMENTS.items():
        add(f"load/rel/{rel}/{src}->{dst}", text)
    for name in _store_statements.all_statement_names():
        texts = _store_statements.statements(name)
        for i, text in enumerate(texts, 1):
            add(f"store/{name}" + (f"#{i}" if len(texts) > 1 else ""), text)
    add("admin/clear", CLEAR_STATEMENT)
    for name, text, params in _library_queries():
        add(f"query/{name}", text, params)
    return out


def lint_payload() -> dict[str, Any]:
    """The input of ``tools/cypher-lint/lint.mjs``: every statement, and the schema's names to check them by."""
    keys = {name for label in NODE_LABELS + ANNOTATION_LABELS for name in label.columns}
    keys |= {n for rel in REL_TYPES for n in rel.columns}
    keys |= {"from", "to"}  # the endpoint keys of the load rows (`row.from`), which the linter takes for properties
    return {
        "statements": neo4j_statements(),
        "schema": {
            "labels": [label.name for label in NODE_LABELS + ANNOTATION_LABELS],
            "relationshipTypes": [rel.name for rel in REL_TYPES],
            "propertyKeys": sorted(keys),
        },
    }


def _library_queries() -> list[tuple[str, str, list[str]]]:
    """The query library's Neo4j texts, and its internal statements (``queries/_NAME.cypher``).

    Empty while ``sfc_graph.queries`` does not offer ``all_queries``.
    """
    try:
        from .. import queries as library
        from ..queries import all_queries
    except ImportError:
        log.debug("sfc_graph.queries.all_queries is not available; library queries not listed")
        return []
    found = []
    for query in all_queries():
        params = getattr(query, "params", ()) or ()
        names = list(params) if isinstance(params, dict) else [p if isinstance(p, str) else p.name for p in params]
        found.append((query.name, query.text_for("neo4j"), names))
    internal = getattr(library, "internal_statement", None)
    if internal is not None:
        folder = resources.files(library.__name__)
        for path in sorted(folder.iterdir(), key=lambda p: p.name):
            if path.name.startswith("_") and path.name.endswith(".cypher"):
                name = path.name[1: -len(".cypher")]
                found.append((f"internal/{name}", internal(name), []))
    return found


# --- the store -------------------------------------------------------------------------------------------------
class Neo4jStore(BaseStore):
    """A circuit store in a Neo4j 5 database."""

    backend = "neo4j"
    dialect = "neo4j"

    def __init__(
        self,
        uri: str,
        *,
        user: str | None = "neo4j",
        password: str | None = None,
        database: str | None = None,
        read_only: bool = False,
    ):
        import neo4j

        self._neo4j = neo4j
        self._secret = password or None
        self.uri = safe_uri(uri)
        self.database = database or None
        self.read_only = read_only
        self._driver = None
        if _has_userinfo(uri):
            raise StoreUnavailable(
                f"{self.uri}: put Neo4j credentials in SFC_NEO4J_USER and SFC_NEO4J_PASSWORD, not in the URI"
            )
        auth = (user or "neo4j", password) if password is not None else None
        try:
            self._driver = neo4j.GraphDatabase.driver(
                uri,
                auth=auth,
                connection_timeout=CONNECTION_TIMEOUT_S,
                connection_acquisition_timeout=ACQUISITION_TIMEOUT_S,
                max_transaction_retry_time=MAX_RETRY_TIME_S,
                user_agent="sfc-graph",
            )
            self._driver.verify_connectivity()
        except (neo4j.exceptions.Neo4jError, neo4j.exceptions.DriverError, ValueError) as exc:
            self.close()
            raise self._error(exc, doing="connect") from None
        if not read_only:
            try:
                self._create_schema()
            except BaseException:
                self.close()
                raise

    # --- primitives ---------------------------------------------------------------------------------------
    def close(self) -> None:
        if self._driver is not None:
            driver, self._driver = self._driver, None
            driver.close()

    def run(self, cypher: str, params: dict[str, Any] | None = None) -> pl.DataFrame:
        """Run one statement; a polars frame with the columns in ``RETURN`` order.

        On a read-only store it runs in a read transaction, so the server itself refuses a write (and a
        cluster may answer from a follower). On a read-write store it runs in a write transaction: the
        statement may write (``sfc cypher --write``), and the reads of a load see the latest writes.
        """

        def work(tx):
            result = tx.run(cypher, params or {})
            keys = list(result.keys())
            return keys, [tuple(_plain(v) for v in record.values()) for record in result]

        keys, rows = self._session_call("read" if self.read_only else "write", work, doing="query")
        return _frame(keys, rows)

    def check_read_only(self, cypher: str, params: dict[str, Any] | None = None) -> None:
        """The server's verdict: the statement's query type from EXPLAIN (nothing runs) must be a read;
        :meth:`run` on a read-only store then runs it in a read transaction, which the server enforces."""

        def work(tx):
            return tx.run("EXPLAIN " + cypher, params or {}).consume().query_type

        query_type = self._session_call("read", work, doing="query")
        if query_type != "r":
            raise QueryError(f"refused: Neo4j classifies this statement as {query_type!r}, not a read ('r')")

    def _write_rows(self, rows: CircuitRows, progress: Progress | None) -> None:
        self._require_writable()
        steps: list[tuple[str, str, pl.DataFrame, bool]] = []
        # Shared nodes first, the circuit's own after; relationships once all their endpoints exist.
        # Shared nodes and their links are MERGEd in key order, so that concurrent loads lock them in the same
        # order (fewer deadlocks to retry).
        for label in NODE_LABELS:
            frame = rows.nodes[label.name]
            frame = frame.sort(label.key) if label.shared else frame
            steps.append((f"{label.name} nodes", NODE_STATEMENTS[label.name], frame, False))
        for key, frame in rows.rels.items():
            frame = frame.sort("from", "to") if key[0] in _SHARED_RELS else frame
            steps.append((f"{key[0]} relationships ({key[1]}->{key[2]})", REL_STATEMENTS[key], frame, True))
        steps = [step for step in steps if step[2].height]
        total = sum(frame.height for _, _, frame, _ in steps)

        def work(tx):
            done = 0
            for what, text, frame, check in steps:
                for offset in range(0, frame.height, BATCH_ROWS):
                    batch = frame.slice(offset, BATCH_ROWS).to_dicts()
                    written = tx.run(text, {"rows": batch}).single(strict=True)["written"]
                    if check and written != len(batch):
                        # An endpoint is missing (e.g. deleted by a concurrent `sfc delete`): write nothing.
                        raise StoreError(
                            f"Neo4j at {self.uri}: {len(batch) - written} of {len(batch)} {what} of circuit "
                            f"{rows.circuit_id!r} found no endpoint; the load was rolled back, run it again"
                        )
                    done += len(batch)
                    if progress:
                        progress(done, total)

        self._session_call("write", work, doing=f"load circuit {rows.circuit_id!r}")

    def _run_in_transaction(self, cypher: Iterable[str], params: dict[str, Any]) -> None:
        self._require_writable()
        texts = list(cypher)

        def work(tx):
            for text in texts:
                used = {k: v for k, v in params.items() if f"${k}" in text}
                tx.run(text, used).consume()

        self._session_call("write", work, doing="write")

    def clear(self) -> None:
        """Delete every node and relationship in the database (for test databases only)."""
        self._run_in_transaction([CLEAR_STATEMENT], {})

    # --- helpers ------------------------------------------------------------------------------------------
    def _create_schema(self) -> None:
        have: set[str] = set()
        for text in SHOW_SCHEMA_STATEMENTS.values():
            have |= set(self._session_call("read", lambda tx, text=text: [r.values()[0] for r in tx.run(text)],
                                           doing="read the schema"))
        # Schema changes cannot share a transaction with data: one transaction each. Two stores opened at
        # once may both create a constraint; the loser's "already exists" is success.
        for name, text in SCHEMA_STATEMENTS.items():
            if _schema_object_name(text) in have:
                continue
            self._session_call("write", lambda tx, text=text: tx.run(text).consume(), doing="create the schema",
                               tolerate=_already_exists)

    def _require_writable(self) -> None:
        if self.read_only:
            raise StoreError(f"the Neo4j store at {self.uri} is open read-only")

    def _session_call(self, mode: str, work: Callable, *, doing: str,
                      tolerate: Callable[[BaseException], bool] | None = None):
        if self._driver is None:
            raise StoreError(f"the Neo4j store at {self.uri} is closed")
        neo4j = self._neo4j
        # Read-only stores run everything as reads, so the server itself refuses a write.
        access = neo4j.READ_ACCESS if (mode == "read" or self.read_only) else neo4j.WRITE_ACCESS
        try:
            with self._driver.session(
                database=self.database,
                default_access_mode=access,
                # Causal consistency: a read sees the writes of this store object, also on a cluster.
                bookmark_manager=self._driver.execute_query_bookmark_manager,
            ) as session:
                if access == neo4j.READ_ACCESS:
                    return session.execute_read(work)
                return session.execute_write(work)
        except (neo4j.exceptions.Neo4jError, neo4j.exceptions.DriverError) as exc:
            if tolerate is not None and tolerate(exc):
                return None
            raise self._error(exc, doing=doing) from None

    def _error(self, exc: BaseException, *, doing: str) -> Exception:
        """One sentence for a driver or server error, naming the server but never the credentials."""
        ex = self._neo4j.exceptions
        message = self._scrub(str(getattr(exc, "message", None) or exc))
        detail = _first_line(message)
        code = getattr(exc, "code", None) or ""
        where = f"Neo4j at {self.uri}"
        if isinstance(exc, ex.AuthError):
            return StoreUnavailable(
                f"{where} refused the user name or password ({detail.rstrip('.')}); "
                "set SFC_NEO4J_USER and SFC_NEO4J_PASSWORD"
            )
        if code == "Neo.ClientError.Database.DatabaseNotFound":
            return StoreUnavailable(
                f"{where} has no database {self.database or '(default)'!r}; create it or set SFC_NEO4J_DATABASE"
            )
        if isinstance(exc, (ex.ServiceUnavailable, ex.SessionExpired, ex.ConnectionAcquisitionTimeoutError)):
            return StoreUnavailable(
                f"cannot reach {where} ({_reason(message)}); is the server running and the URI right "
                "(see docker/README.md)?"
            )
        if isinstance(exc, (ex.ConfigurationError, ValueError)):
            return StoreUnavailable(f"cannot use {where} ({detail})")
        if isinstance(exc, ex.Forbidden):
            return StoreError(f"{where} does not allow this user to {doing} ({detail})")
        if isinstance(exc, ex.ConstraintError):
            return StoreError(
                f"{where} refused to {doing}: a node with the same key exists already — was the same circuit "
                f"loaded concurrently? Nothing of this load was written ({detail})"
            )
        if code == "Neo.ClientError.Statement.AccessMode":
            return QueryError(f"{where} refused a write in a read-only transaction ({detail})")
        if doing == "query" and isinstance(exc, ex.ClientError):
            return QueryError(f"{where} refused the query: {detail}")
        if isinstance(exc, ex.ClientError):
            return StoreError(f"{where} refused to {doing}: {detail}")
        return StoreError(f"{where} failed to {doing}: {detail}")

    def _scrub(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text


def _schema_object_name(ddl: str) -> str:
    # "CREATE CONSTRAINT <name> IF NOT EXISTS …" / "CREATE INDEX <name> IF NOT EXISTS …"
    return ddl.split()[2]


def _already_exists(exc: BaseException) -> bool:
    return str(getattr(exc, "code", "") or "").endswith("AlreadyExists")


# --- small helpers --------------------------------------------------------------------------------------------
def safe_uri(uri: str) -> str:
    """``scheme://host:port`` of a Neo4j URI: no user info, no query string."""
    try:
        parts = urlsplit(str(uri))
    except ValueError:
        return "the given Neo4j URI"
    host = parts.netloc.rsplit("@", 1)[-1]
    return f"{parts.scheme}://{host}" if parts.scheme else "the given Neo4j URI"


def _has_userinfo(uri: str) -> bool:
    try:
        return "@" in urlsplit(str(uri)).netloc
    except ValueError:
        return False


def _first_line(text: str) -> str:
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return lines[0] if lines else "no details"


def _reason(message: str) -> str:
    # "Couldn't connect to host:1 (resolved to …):\nFailed … (reason [Errno 111] Connection refused)"
    match = re.search(r"reason (?:\[Errno -?\d+\] )?([^)\n]+)\)", message)
    if match:
        return match.group(1).strip().lower()
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    reason = lines[-1].rstrip(".:") if lines else "no details"
    return reason[:1].lower() + reason[1:]


def _plain(value: Any) -> Any:
    """Driver values as plain Python (nodes and relationships as their property maps)."""
    import neo4j.graph
    import neo4j.time

    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, neo4j.graph.Path):
        return {"nodes": [_plain(n) for n in value.nodes], "relationships": [_plain(r) for r in value.relationships]}
    if isinstance(value, (neo4j.graph.Node, neo4j.graph.Relationship)):
        return dict(value.items())
    if isinstance(value, (neo4j.time.DateTime, neo4j.time.Date, neo4j.time.Time, neo4j.time.Duration)):
        return value.to_native() if hasattr(value, "to_native") else str(value)
    return value


def _frame(keys: list[str], rows: list[tuple]) -> pl.DataFrame:
    if not rows:
        return pl.DataFrame(schema={key: pl.Null for key in keys})
    return pl.DataFrame(rows, schema=keys, orient="row", infer_schema_length=None, strict=False)
