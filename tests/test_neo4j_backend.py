"""The Neo4j backend: what runs without a server (failing fast, error sentences, static statements, the
neo4j-admin import files) and, marked ``neo4j``, what needs one. There is no fake driver here: the
transaction logic is tested on a real server only (the conformance suite and the ``neo4j``-marked tests).

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
from sfc_graph.graph import LABELS, NODE_LABELS, REL_TYPES
from sfc_graph.store import neo4j as backend
from sfc_graph.store import open_store
from sfc_graph.store.neo4j import neo4j_statements

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
    assert "CREATE (a)-[:EDGE {weight: row.weight, weight_invariant: row.weight_invariant}]->(b)" in edge
    assert "MERGE (a)-[:IN_DICTIONARY]->(b)" in backend.REL_STATEMENTS[("IN_DICTIONARY", "Feature", "Dictionary")]


def test_library_queries_are_listed_when_the_library_exists():
    try:
        from sfc_graph.queries import all_queries
    except ImportError:
        pytest.skip("the query library is not built yet")
    names = {s["name"] for s in neo4j_statements()}
    assert {f"query/{q.name}" for q in all_queries()} <= names


# --- neo4j-admin import files ---------------------------------------------------------------------------------------
def test_import_files_dedupe_shared_nodes_and_every_endpoint_exists(tmp_path):
    from sfc_graph.store.neo4j_import import write_import_files

    a = build_circuit(tmp_path / "a", "circuit-a", task="t1", seed=1, feature_pool=range(10))
    b = build_circuit(tmp_path / "b", "circuit-b", task="t2", seed=2, feature_pool=range(10))
    result = write_import_files([tmp_path / "a", tmp_path / "b", tmp_path / "a"], tmp_path / "out")
    assert result.circuits == ["circuit-a", "circuit-b"] and result.skipped == ["circuit-a"]
    out = tmp_path / "out"

    def table(folder: str, stem: str) -> pl.DataFrame | None:
        """The rows of one label or relationship; None when the circuits have none (no files are written)."""
        header_file = out / folder / f"{stem}.header.csv"
        if not header_file.exists():
            return None
        header = header_file.read_text().strip().split(",")
        parts = sorted((out / folder).glob(f"{stem}.[cs]*.csv"))
        return pl.concat([pl.read_csv(p, has_header=False, new_columns=header, infer_schema=False) for p in parts])

    features = table("nodes", "Feature")
    assert features.columns[0] == "id:ID(Feature)" and "latent:long" in features.columns
    assert features.height == features["id:ID(Feature)"].n_unique()
    identities = set(a.feature_identity().drop_nulls()) | set(b.feature_identity().drop_nulls())
    assert set(features["id:ID(Feature)"]) == identities
    tables = {label.name: table("nodes", label.name) for label in NODE_LABELS}
    # what these circuits have is written; labels they have no rows of (Head, Token) are not
    assert {name for name, frame in tables.items() if frame is not None} == {
        "Model", "Dictionary", "Feature", "ErrorNode", "Output", "Task", "Circuit", "CircuitNode"}
    keys = {label.name: set() if tables[label.name] is None else set(tables[label.name][f"{label.key}:ID({label.name})"])
            for label in NODE_LABELS}
    edges = 0
    for rel in REL_TYPES:
        for src, dst in rel.endpoints:
            frame = table("relationships", f"{rel.name}.{src}.{dst}")
            if frame is None:  # no rows: fine where an end has none here, or for records written outside circuits
                records = ("WEIGHT", "HAS_CIRCUIT", "INTERVENES_ON", "ABLATES", "HAS_SCORE")
                assert not (keys.get(src) and keys.get(dst)) or rel.name in records, f"{rel.name} {src}->{dst} missing"
                continue
            assert set(frame[f":START_ID({src})"]) <= keys[src] and set(frame[f":END_ID({dst})"]) <= keys[dst]
            assert set(frame[":TYPE"]) == {rel.name}
            edges += frame.height if rel.name == "EDGE" else 0
    assert edges == a.edges.height + b.edges.height
    script = (out / "import.sh").read_text()
    assert "database import full" in script and '"$HERE"/nodes/Feature.header.csv' in script
    assert subprocess.run(["sh", "-n", str(out / "import.sh")]).returncode == 0
    # a constraint for every label of the schema, records and annotations included
    assert (out / "schema.cypher").read_text().count("CREATE CONSTRAINT") == len(LABELS)


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
