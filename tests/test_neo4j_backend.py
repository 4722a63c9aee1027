"""The Neo4j backend: what runs without a server (failing fast, error sentences, the transaction and batching
logic against a recording fake driver, the neo4j-admin import files) and, marked ``neo4j``, what needs one.

The backend-conformance suite (tests/test_store_conformance.py) runs on Neo4j too when SFC_NEO4J_URI is set.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import polars as pl
import pytest
from click.testing import CliRunner

from builders import build_circuit
from sfc_graph.errors import QueryError, StoreError, StoreUnavailable
from sfc_graph.graph import NODE_LABELS, REL_TYPES, circuit_rows
from sfc_graph.store import neo4j as backend
from sfc_graph.store import open_store
from sfc_graph.store.neo4j import Neo4jStore, neo4j_statements

MARKER = "pw-marker-8d1f5a"
NEO4J_URI = os.environ.get("SFC_NEO4J_URI")


def _one_sentence(text: str) -> None:
    assert "Traceback" not in text
    assert len(text.strip().splitlines()) == 1, text


# --- without a server ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("uri", ["bolt://127.0.0.1:1", "neo4j://127.0.0.1:1"])
def test_unreachable_server_fails_fast_in_one_sentence(uri, monkeypatch):
    monkeypatch.setenv("SFC_NEO4J_PASSWORD", MARKER)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as caught:
        open_store(uri)
    assert time.monotonic() - started < 10
    message = str(caught.value)
    _one_sentence(message)
    assert uri in message and "cannot reach" in message
    assert MARKER not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_cli_unreachable_server(monkeypatch):
    from sfc_graph.cli import main

    if main.get_command(None, "circuits") is None:
        pytest.skip("sfc circuits is not built yet")
    monkeypatch.setenv("SFC_NEO4J_PASSWORD", MARKER)
    result = CliRunner().invoke(main, ["circuits", "--store", "bolt://127.0.0.1:1"])
    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit)
    _one_sentence(result.output)
    assert "bolt://127.0.0.1:1" in result.output and MARKER not in result.output


def test_credentials_in_the_uri_are_refused_without_echoing_them():
    with pytest.raises(StoreUnavailable) as caught:
        open_store(f"bolt://neo4j:{MARKER}@127.0.0.1:1")
    assert MARKER not in str(caught.value) and "bolt://127.0.0.1:1" in str(caught.value)


def test_safe_uri_drops_user_info_and_query():
    assert backend.safe_uri("neo4j+s://u:p@db.example.org:7687?policy=x") == "neo4j+s://db.example.org:7687"


# --- statements: static, parameterised, complete -----------------------------------------------------------------
def test_every_load_statement_is_listed_and_static():
    texts = {s["text"] for s in neo4j_statements()}
    assert set(backend.NODE_STATEMENTS) == {label.name for label in NODE_LABELS}
    assert set(backend.REL_STATEMENTS) == {(r.name, a, b) for r in REL_TYPES for a, b in r.endpoints}
    for text in [*backend.NODE_STATEMENTS.values(), *backend.REL_STATEMENTS.values(), *backend.SCHEMA_STATEMENTS.values()]:
        assert text in texts
    for statement in neo4j_statements():
        assert set(backend._parameter_names(statement["text"])) <= set(statement["params"]), statement["name"]


def test_schema_has_a_constraint_per_label_key_and_indexes():
    ddl = list(backend.SCHEMA_STATEMENTS.values())
    for label in NODE_LABELS:
        assert f"CREATE CONSTRAINT sfc_{label.name.lower()}_{label.key}_unique IF NOT EXISTS FOR (n:{label.name}) " \
               f"REQUIRE n.{label.key} IS UNIQUE" in ddl
    assert "CREATE INDEX sfc_circuitnode_circuit IF NOT EXISTS FOR (n:CircuitNode) ON (n.circuit)" in ddl
    assert "CREATE INDEX sfc_feature_dictionary IF NOT EXISTS FOR (n:Feature) ON (n.dictionary)" in ddl


def test_shared_nodes_merge_and_circuit_nodes_create():
    for label in NODE_LABELS:
        text = backend.NODE_STATEMENTS[label.name]
        assert ("MERGE (n:" if label.shared else "CREATE (n:") in text
    edge = backend.REL_STATEMENTS[("EDGE", "CircuitNode", "CircuitNode")]
    assert "MATCH (a:CircuitNode {uid: row.from})\nMATCH (b:CircuitNode {uid: row.to})" in edge
    assert "CREATE (a)-[:EDGE {circuit: row.circuit, weight: row.weight}]->(b)" in edge
    assert "MERGE (a)-[:IN_DICTIONARY]->(b)" in backend.REL_STATEMENTS[("IN_DICTIONARY", "Feature", "Dictionary")]


def test_library_queries_are_listed_when_the_library_exists():
    try:
        from sfc_graph.queries import all_queries
    except ImportError:
        pytest.skip("the query library is not built yet")
    names = {s["name"] for s in neo4j_statements()}
    assert {f"query/{q.name}" for q in all_queries()} <= names


# --- the transaction logic, against a recording fake driver --------------------------------------------------------
class FakeResult:
    def __init__(self, keys=(), rows=(), written=None):
        self._keys, self._rows, self._written = list(keys), list(rows), written

    def keys(self):
        return self._keys

    def __iter__(self):
        for row in self._rows:
            yield FakeRecord(row)

    def single(self, strict=False):
        return {"written": self._written}

    def consume(self):
        return None


class FakeRecord:
    def __init__(self, values):
        self._values = values

    def values(self):
        return list(self._values)


class FakeDriver:
    """Records every transaction: its access mode, statements (text, params) and whether it committed."""

    def __init__(self, uri, auth=None, *, respond=None, fail_connect=None, **config):
        self.uri, self.auth, self.config = uri, auth, config
        self.transactions: list[dict] = []
        self.respond = respond or (lambda text, params: FakeResult(written=len(params.get("rows", []))))
        self.fail_connect = fail_connect
        self.execute_query_bookmark_manager = object()
        self.sessions: list[dict] = []
        self.closed = False

    def verify_connectivity(self):
        if self.fail_connect is not None:
            raise self.fail_connect

    def session(self, **config):
        self.sessions.append(config)
        return FakeSession(self, config["default_access_mode"])

    def close(self):
        self.closed = True


class FakeSession:
    def __init__(self, driver, access):
        self.driver, self.access = driver, access

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def _execute(self, mode, work):
        record = {"mode": mode, "session_access": self.access, "statements": [], "committed": False}
        self.driver.transactions.append(record)
        tx = FakeTx(self.driver, record)
        result = work(tx)  # an exception propagates: nothing committed
        record["committed"] = True
        return result

    def execute_read(self, work):
        return self._execute("READ", work)

    def execute_write(self, work):
        return self._execute("WRITE", work)


class FakeTx:
    def __init__(self, driver, record):
        self.driver, self.record = driver, record

    def run(self, text, params=None):
        params = dict(params or {})
        self.record["statements"].append((text, params))
        return self.driver.respond(text, params)


@pytest.fixture
def fake(monkeypatch):
    import neo4j

    made: list[FakeDriver] = []
    options: dict = {}

    def driver(uri, auth=None, **config):
        made.append(FakeDriver(uri, auth, **{**config, **options}))
        return made[-1]

    monkeypatch.setattr(neo4j.GraphDatabase, "driver", driver)

    class Handle:
        drivers = made

        @staticmethod
        def set(**kw):
            options.update(kw)

        @property
        def driver(self):
            return made[-1]

    return Handle()


def _writes(driver):
    return [t for t in driver.transactions if t["mode"] == "WRITE"]


def _loads(driver):
    """The write transactions that write rows (not the reads of a read-write store, not the schema)."""
    return [t for t in _writes(driver) if any("rows" in params for _, params in t["statements"])]


def test_open_creates_the_schema(fake):
    store = Neo4jStore("bolt://db.example:7687", password="pw", database="research")
    driver = fake.driver
    assert driver.auth == ("neo4j", "pw")
    assert driver.config["connection_timeout"] <= 10
    schema = [t["statements"][0][0] for t in _writes(driver)]
    assert schema == list(backend.SCHEMA_STATEMENTS.values())
    store.run("MATCH (c:Circuit) RETURN c.id AS id")
    assert driver.transactions[-1]["mode"] == "WRITE"  # a read-write store: `sfc cypher --write` may write
    assert all(s["database"] == "research" for s in driver.sessions)
    store.close()
    assert driver.closed


def test_open_skips_the_schema_the_database_has(fake):
    names = [text.split()[2] for text in backend.SCHEMA_STATEMENTS.values()]
    fake.set(respond=lambda text, params: FakeResult(["name"], [(n,) for n in names]) if text.startswith("SHOW")
             else FakeResult(written=0))
    Neo4jStore("bolt://db.example:7687", password="pw")
    assert not _writes(fake.driver)


def test_a_schema_race_is_not_an_error(fake):
    def respond(text, params):
        if text.startswith("CREATE CONSTRAINT sfc_feature"):
            raise _server_error("Neo.ClientError.Schema.EquivalentSchemaRuleAlreadyExists", "exists")
        return FakeResult(written=0)

    fake.set(respond=respond)
    Neo4jStore("bolt://db.example:7687", password="pw")
    assert len(_writes(fake.driver)) == len(backend.SCHEMA_STATEMENTS)


def test_load_is_one_write_transaction_in_batches(fake, tmp_path, monkeypatch):
    monkeypatch.setattr(backend, "BATCH_ROWS", 10)
    bundle = build_circuit(tmp_path / "a", "circuit-a", seed=1)
    store = Neo4jStore("bolt://db.example:7687", password="pw")
    progress: list[tuple[int, int]] = []
    assert store.load(tmp_path / "a", progress=lambda done, total: progress.append((done, total))).loaded
    writes = _loads(fake.driver)
    assert len(writes) == 1 and writes[0]["committed"]
    statements = writes[0]["statements"]
    allowed = set(backend.NODE_STATEMENTS.values()) | set(backend.REL_STATEMENTS.values())
    assert {text for text, _ in statements} <= allowed
    assert all(0 < len(params["rows"]) <= 10 for _, params in statements)
    # Every row of every table is sent exactly once (the store is empty: all shared nodes are new).
    rows = circuit_rows(bundle)
    sent: dict[str, int] = {}
    for text, params in statements:
        sent[text] = sent.get(text, 0) + len(params["rows"])
    for label in NODE_LABELS:
        assert sent.get(backend.NODE_STATEMENTS[label.name], 0) == rows.nodes[label.name].height, label.name
    for key, frame in rows.rels.items():
        assert sent.get(backend.REL_STATEMENTS[key], 0) == frame.height, key
    edge_rows = [r for text, p in statements if text == backend.REL_STATEMENTS[("EDGE", "CircuitNode", "CircuitNode")]
                 for r in p["rows"]]
    assert set(edge_rows[0]) == {"from", "to", "circuit", "weight"}
    # Progress per batch, increasing, ending at the total.
    assert len(progress) == len(statements)
    assert [d for d, _ in progress] == sorted(d for d, _ in progress)
    assert progress[-1][0] == progress[-1][1] == sum(sent.values())


class InjectedFailure(Exception):
    pass


def test_failure_midway_commits_nothing(fake, tmp_path):
    build_circuit(tmp_path / "a", "circuit-a", seed=1)
    store = Neo4jStore("bolt://db.example:7687", password="pw")

    def fail(done, total):
        if done > 20:
            raise InjectedFailure

    with pytest.raises(InjectedFailure):
        store.load(tmp_path / "a", progress=fail)
    (load,) = _loads(fake.driver)
    assert not load["committed"]


def test_a_missing_endpoint_rolls_the_load_back(fake, tmp_path):
    edge = backend.REL_STATEMENTS[("EDGE", "CircuitNode", "CircuitNode")]
    fake.set(respond=lambda text, params: FakeResult(
        written=len(params.get("rows", [])) - (1 if text == edge else 0)))
    build_circuit(tmp_path / "a", "circuit-a", seed=1)
    store = Neo4jStore("bolt://db.example:7687", password="pw")
    with pytest.raises(StoreError, match="circuit 'circuit-a'.*rolled back"):
        store.load(tmp_path / "a")
    (load,) = _loads(fake.driver)
    assert not load["committed"]


def test_run_returns_columns_in_return_order(fake):
    fake.set(respond=lambda text, params: FakeResult(["z", "a"], [(1, "x"), (2.5, None)]))
    store = Neo4jStore("bolt://db.example:7687", password="pw", read_only=True)
    frame = store.run("MATCH (n) RETURN n.z AS z, n.a AS a")
    assert frame.columns == ["z", "a"] and frame.height == 2
    assert frame["z"].dtype == pl.Float64
    fake.set(respond=lambda text, params: FakeResult(["id", "task"], []))
    store = Neo4jStore("bolt://db.example:7687", password="pw", read_only=True)
    empty = store.run("MATCH (c:Circuit) RETURN c.id AS id, c.task AS task")
    assert empty.columns == ["id", "task"] and empty.height == 0


def test_read_only_sends_no_schema_and_refuses_loads(fake, tmp_path):
    build_circuit(tmp_path / "a", "circuit-a", seed=1)
    store = Neo4jStore("bolt://db.example:7687", password="pw", read_only=True)
    with pytest.raises(StoreError, match="read-only"):
        store.load(tmp_path / "a")
    with pytest.raises(StoreError, match="read-only"):
        store._run_in_transaction(["MATCH (c:Circuit {id: $circuit}) DETACH DELETE c"], {"circuit": "circuit-a"})
    assert all(t["mode"] == "READ" for t in fake.driver.transactions)
    assert all(s["default_access_mode"] == "READ" for s in fake.driver.sessions)


def _server_error(code: str, message: str):
    from neo4j.exceptions import Neo4jError

    return Neo4jError._hydrate_neo4j(code=code, message=message)


def test_wrong_password_is_one_sentence_without_the_password(fake):
    fake.set(fail_connect=_server_error("Neo.ClientError.Security.Unauthorized",
                                        "The client is unauthorized due to authentication failure."))
    with pytest.raises(StoreUnavailable) as caught:
        Neo4jStore("bolt://db.example:7687", password=MARKER)
    message = str(caught.value)
    _one_sentence(message)
    assert "bolt://db.example:7687" in message and "password" in message and MARKER not in message
    assert fake.driver.closed


def test_server_messages_are_scrubbed_of_the_password(fake):
    fake.set(fail_connect=_server_error("Neo.ClientError.Security.Unauthorized", f"bad credentials {MARKER}"))
    with pytest.raises(StoreUnavailable) as caught:
        Neo4jStore("bolt://db.example:7687", password=MARKER)
    assert MARKER not in str(caught.value)


def test_unknown_database(fake):
    fake.set(respond=lambda text, params: (_ for _ in ()).throw(
        _server_error("Neo.ClientError.Database.DatabaseNotFound", "Graph not found: nope")))
    with pytest.raises(StoreUnavailable, match="no database 'nope'"):
        Neo4jStore("bolt://db.example:7687", password="pw", database="nope")


def test_bad_cypher_is_a_query_error_with_the_first_line(fake):
    def respond(text, params):
        raise _server_error("Neo.ClientError.Statement.SyntaxError",
                            "Invalid input 'RETRN' (line 1, column 11 (offset: 10))\n\"MATCH (n) RETRN n\"\n ^")

    store = Neo4jStore("bolt://db.example:7687", password="pw", read_only=True)
    fake.driver.respond = respond
    with pytest.raises(QueryError) as caught:
        store.run("MATCH (n) RETRN n")
    _one_sentence(str(caught.value))
    assert "Invalid input 'RETRN'" in str(caught.value) and "bolt://db.example:7687" in str(caught.value)


# --- neo4j-admin import files ---------------------------------------------------------------------------------------
def test_import_files_dedupe_shared_nodes_and_every_endpoint_exists(tmp_path):
    from sfc_graph.store.neo4j_import import write_import_files

    a = build_circuit(tmp_path / "a", "circuit-a", task="t1", seed=1, feature_pool=range(10))
    b = build_circuit(tmp_path / "b", "circuit-b", task="t2", seed=2, feature_pool=range(10))
    result = write_import_files([tmp_path / "a", tmp_path / "b", tmp_path / "a"], tmp_path / "out")
    assert result.circuits == ["circuit-a", "circuit-b"] and result.skipped == ["circuit-a"]
    out = tmp_path / "out"

    def table(folder: str, stem: str) -> pl.DataFrame:
        header = (out / folder / f"{stem}.header.csv").read_text().strip().split(",")
        parts = sorted((out / folder).glob(f"{stem}.[cs]*.csv"))
        return pl.concat([pl.read_csv(p, has_header=False, new_columns=header, infer_schema=False) for p in parts])

    features = table("nodes", "Feature")
    assert features.columns[0] == "id:ID(Feature)" and "latent:long" in features.columns
    assert features.height == features["id:ID(Feature)"].n_unique()
    identities = set(a.feature_identity().drop_nulls()) | set(b.feature_identity().drop_nulls())
    assert set(features["id:ID(Feature)"]) == identities
    keys = {label.name: set(table("nodes", label.name)[f"{label.key}:ID({label.name})"]) for label in NODE_LABELS}
    edges = 0
    for rel in REL_TYPES:
        for src, dst in rel.endpoints:
            frame = table("relationships", f"{rel.name}.{src}.{dst}")
            assert set(frame[f":START_ID({src})"]) <= keys[src] and set(frame[f":END_ID({dst})"]) <= keys[dst]
            assert set(frame[":TYPE"]) == {rel.name}
            edges += frame.height if rel.name == "EDGE" else 0
    assert edges == a.edges.height + b.edges.height
    script = (out / "import.sh").read_text()
    assert "database import full" in script and '"$HERE"/nodes/Feature.header.csv' in script
    assert subprocess.run(["sh", "-n", str(out / "import.sh")]).returncode == 0
    assert (out / "schema.cypher").read_text().count("CREATE CONSTRAINT") == len(NODE_LABELS)


def test_import_files_refuse_a_non_empty_out_and_leave_nothing_on_a_bad_bundle(tmp_path):
    from sfc_graph.errors import BundleError
    from sfc_graph.store.neo4j_import import write_import_files

    build_circuit(tmp_path / "a", "circuit-a", seed=1)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(StoreError, match="not an empty directory"):
        write_import_files([tmp_path / "a"], tmp_path / "full")
    with pytest.raises(BundleError):
        write_import_files([tmp_path / "a", tmp_path / "missing"], tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "full"]


def test_cli_neo4j_import_files(tmp_path):
    from sfc_graph.cli.neo4j_cmds import neo4j_import_files

    build_circuit(tmp_path / "a", "circuit-a", seed=1)
    result = CliRunner().invoke(neo4j_import_files, [str(tmp_path / "a"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "neo4j-admin database import full" in result.output and (tmp_path / "out" / "import.sh").exists()


# --- with a server (SFC_NEO4J_URI) ------------------------------------------------------------------------------
@pytest.fixture
def neo():
    """A store on the test server, emptied first (never point SFC_NEO4J_URI at data you keep)."""
    with open_store(NEO4J_URI) as store:
        store.clear()
        yield store


@pytest.mark.neo4j
@pytest.mark.skipif(not NEO4J_URI, reason="needs a Neo4j server at $SFC_NEO4J_URI")
def test_server_wrong_password(monkeypatch):
    with pytest.raises(StoreUnavailable) as caught:
        open_store(NEO4J_URI, password=MARKER)
    _one_sentence(str(caught.value))
    assert "password" in str(caught.value) and MARKER not in str(caught.value)


@pytest.mark.neo4j
@pytest.mark.skipif(not NEO4J_URI, reason="needs a Neo4j server at $SFC_NEO4J_URI")
def test_server_has_the_constraints_and_indexes(neo):
    names = set(neo.run("SHOW CONSTRAINTS YIELD name RETURN name")["name"].to_list())
    assert {f"sfc_{label.name.lower()}_{label.key}_unique" for label in NODE_LABELS} <= names
    indexes = set(neo.run("SHOW INDEXES YIELD name RETURN name")["name"].to_list())
    assert {backend._index_name(label, prop) for label, prop in backend.INDEXED_PROPERTIES} <= indexes


@pytest.mark.neo4j
@pytest.mark.skipif(not NEO4J_URI, reason="needs a Neo4j server at $SFC_NEO4J_URI")
def test_server_read_only_store_cannot_write(neo):
    with open_store(NEO4J_URI, read_only=True) as reader:
        with pytest.raises(QueryError):
            reader.run("CREATE (n:Scratch) RETURN count(n) AS n")
    assert neo.run("MATCH (n:Scratch) RETURN count(n) AS n")["n"][0] == 0


@pytest.mark.neo4j
@pytest.mark.skipif(not NEO4J_URI, reason="needs a Neo4j server at $SFC_NEO4J_URI")
def test_server_unknown_database():
    with pytest.raises(StoreUnavailable, match="no database"):
        open_store(NEO4J_URI, database="sfcnosuchdatabase")


@pytest.mark.neo4j
@pytest.mark.skipif(not NEO4J_URI, reason="needs a Neo4j server at $SFC_NEO4J_URI")
def test_server_small_batches_round_trip(neo, tmp_path, monkeypatch):
    monkeypatch.setattr(backend, "BATCH_ROWS", 7)
    bundle = build_circuit(tmp_path / "a", "circuit-a", seed=4)
    neo.load(tmp_path / "a")
    back = neo.read_circuit("circuit-a")
    assert back.edges.height == bundle.edges.height and back.nodes.height == bundle.nodes.height
    assert neo.run("MATCH (n:CircuitNode {circuit: $c}) RETURN count(n) AS n", {"c": "circuit-a"})["n"][0] == \
        bundle.nodes.height


@pytest.mark.neo4j
@pytest.mark.skipif(not NEO4J_URI, reason="needs a Neo4j server at $SFC_NEO4J_URI")
def test_server_concurrent_loads_share_features_once(neo, tmp_path):
    bundles = [build_circuit(tmp_path / f"c{i}", f"circuit-{i}", task=f"t{i}", seed=i, feature_pool=range(8))
               for i in range(4)]
    errors: list[BaseException] = []

    def load(i: int) -> None:
        try:
            with open_store(NEO4J_URI) as store:
                store.load(tmp_path / f"c{i}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=load, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    identities = set().union(*(set(b.feature_identity().drop_nulls()) for b in bundles))
    counts = neo.run("MATCH (f:Feature) RETURN f.id AS id, count(*) AS n")
    assert set(counts["id"].to_list()) == identities and set(counts["n"].to_list()) == {1}
    in_dictionary = neo.run("MATCH (f:Feature)-[r:IN_DICTIONARY]->() RETURN f.id AS id, count(r) AS n")
    assert set(in_dictionary["n"].to_list()) == {1}


@pytest.mark.neo4j
@pytest.mark.skipif(not NEO4J_URI, reason="needs a Neo4j server at $SFC_NEO4J_URI")
def test_server_sigkill_in_the_middle_of_a_load(neo, tmp_path):
    build_circuit(tmp_path / "a", "circuit-a", task="t1", seed=1)
    build_circuit(tmp_path / "b", "circuit-b", task="t2", seed=2, features_per_site=12, feature_pool=range(40))
    neo.load(tmp_path / "a")
    before = neo.stats()
    script = textwrap.dedent(
        f"""
        import os, signal
        from sfc_graph.store import neo4j as backend
        from sfc_graph.store import open_store
        backend.BATCH_ROWS = 5
        calls = []
        def kill_midway(done, total):
            calls.append(done)
            if len(calls) == 6:
                os.kill(os.getpid(), signal.SIGKILL)
        with open_store({NEO4J_URI!r}) as store:
            store.load({str(tmp_path / "b")!r}, progress=kill_midway)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    # The server rolls back the transaction of a dropped connection (it may take a moment to notice).
    deadline = time.monotonic() + 30
    while neo.has_circuit("circuit-b") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not neo.has_circuit("circuit-b")
    assert neo.stats().equals(before)
    assert neo.load(tmp_path / "b").loaded
