"""Backend conformance: every backend must behave identically on these (embedded always, Neo4j when set).

Expected values come from the bundles' own Parquet tables, computed here with polars, never from the store.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import polars as pl
import pytest

from builders import build_circuit, dictionaries
from sfc_graph.bundle import read_bundle
from sfc_graph.store import open_store


def _canonical_nodes(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.select("node_id", "kind", "site", "layer", "index", "position", "effect").sort("node_id", "position")


def _canonical_edges(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.select("src", "dst", "src_position", "dst_position", "weight").sort(
        "src", "src_position", "dst", "dst_position"
    )


def _identities(bundle) -> set[str]:
    return set(bundle.feature_identity().drop_nulls().to_list())


def _count(store, name: str) -> int:
    stats = store.stats()
    return int(stats.filter(pl.col("name") == name)["count"][0])


def test_round_trip(store, tmp_path):
    bundle = build_circuit(tmp_path / "a", "circuit-a", task="agreement", seed=3)
    result = store.load(tmp_path / "a")
    assert result.loaded and result.circuit_id == "circuit-a"
    back = store.read_circuit("circuit-a")
    assert back.manifest == read_bundle(tmp_path / "a").manifest
    assert _canonical_nodes(back.nodes).equals(_canonical_nodes(bundle.nodes))
    assert _canonical_edges(back.edges).equals(_canonical_edges(bundle.edges))
    row = store.circuits().row(0, named=True)
    assert (row["id"], row["task"], row["n_nodes"], row["n_edges"]) == (
        "circuit-a", "agreement", bundle.nodes.height, bundle.edges.height
    )


def test_round_trip_per_position(store, tmp_path):
    """aggregation=none: the same feature at several positions stays several nodes, edges keep positions."""
    first = build_circuit(tmp_path / "p0", "c-pos", seed=5, position=0)
    second = build_circuit(tmp_path / "p1", "c-pos-1", seed=5, position=3)
    nodes = pl.concat([first.nodes, second.nodes])
    edges = pl.concat([first.edges, second.edges,
                       pl.DataFrame({"src": ["resid_1/err"], "dst": ["output"], "src_position": [0], "dst_position": [3],
                                     "weight": [0.25]})])
    from sfc_graph.bundle import write_bundle

    manifest = dict(first.manifest, circuit_id="c-positions", aggregation="none")
    write_bundle(tmp_path / "pos", manifest, nodes, edges)
    store.load(tmp_path / "pos")
    back = store.read_circuit("c-positions")
    assert _canonical_nodes(back.nodes).equals(_canonical_nodes(nodes))
    assert _canonical_edges(back.edges).equals(_canonical_edges(edges))


def test_load_is_idempotent(store, tmp_path):
    build_circuit(tmp_path / "a", "circuit-a", seed=1)
    assert store.load(tmp_path / "a").loaded
    before = store.stats()
    again = store.load(tmp_path / "a")
    assert not again.loaded
    assert store.stats().equals(before)


def test_shared_features_are_one_node(store, tmp_path):
    a = build_circuit(tmp_path / "a", "circuit-a", task="t1", seed=1, feature_pool=range(10))
    b = build_circuit(tmp_path / "b", "circuit-b", task="t2", seed=2, feature_pool=range(10))
    store.load(tmp_path / "a")
    store.load(tmp_path / "b")
    shared = _identities(a) & _identities(b)
    assert shared, "the builder should produce overlapping circuits"
    assert _count(store, "Feature") == len(_identities(a) | _identities(b))
    found = store.run(
        "MATCH (a:Circuit {id: $a})-[:CONTAINS]->(f:Feature) MATCH (b:Circuit {id: $b})-[:CONTAINS]->(f) "
        "RETURN DISTINCT f.id AS id",
        {"a": "circuit-a", "b": "circuit-b"},
    )
    assert set(found["id"].to_list()) == shared
    # Each circuit's instance of a shared feature points at the same Feature node.
    instances = store.run(
        "MATCH (n:CircuitNode)-[:INSTANCE_OF]->(f:Feature) WHERE f.id IN $ids RETURN f.id AS id, count(n) AS n",
        {"ids": sorted(shared)},
    )
    assert set(instances["n"].to_list()) == {2}


def test_different_dictionaries_never_collide(store, tmp_path):
    a = build_circuit(tmp_path / "a", "circuit-a", model="model-one", seed=1, feature_pool=range(6))
    b = build_circuit(tmp_path / "b", "circuit-b", model="model-two", seed=1, feature_pool=range(6))
    store.load(tmp_path / "a")
    store.load(tmp_path / "b")
    assert not (_identities(a) & _identities(b))
    assert _count(store, "Feature") == len(_identities(a)) + len(_identities(b))
    assert _count(store, "Model") == 2
    assert _count(store, "Dictionary") == len(dictionaries()) * 2


def test_delete_keeps_what_others_use(store, tmp_path):
    a = build_circuit(tmp_path / "a", "circuit-a", task="t1", seed=1, feature_pool=range(10))
    b = build_circuit(tmp_path / "b", "circuit-b", task="t2", seed=2, feature_pool=range(10))
    store.load(tmp_path / "a")
    store.load(tmp_path / "b")
    store.delete("circuit-a")
    assert not store.has_circuit("circuit-a")
    assert _count(store, "Feature") == len(_identities(b))
    assert _count(store, "Task") == 1
    assert _count(store, "EDGE") == b.edges.height
    assert _count(store, "CircuitNode") == b.nodes.height
    back = store.read_circuit("circuit-b")
    assert _canonical_nodes(back.nodes).equals(_canonical_nodes(b.nodes))
    assert _canonical_edges(back.edges).equals(_canonical_edges(b.edges))
    store.delete("circuit-b")
    assert int(store.stats()["count"].sum()) == 0
    # A deleted circuit loads again in full.
    assert store.load(tmp_path / "a").loaded
    assert _canonical_edges(store.read_circuit("circuit-a").edges).equals(_canonical_edges(a.edges))


def test_delete_takes_the_records_about_the_circuit(store, tmp_path):
    """A deleted circuit's SHIFT interventions and discovered behaviour go with it; another circuit's stay,
    and so do the features its intervention ablates."""
    from sfc_graph.behaviours import BehaviourRecord, write_behaviour
    from sfc_graph.interventions import AblatedFeature, InterventionRecord, write_intervention

    circuits = {cid: build_circuit(tmp_path / cid, cid, task=cid, seed=seed, feature_pool=range(10))
                for cid, seed in (("circuit-a", 1), ("circuit-b", 2))}
    for cid, bundle in circuits.items():
        store.load(tmp_path / cid)
        feature = bundle.nodes.filter(pl.col("kind") == "feature").row(0, named=True)
        identity = bundle.feature_identity().drop_nulls()[0]
        # circuit-a's ablated feature has no measured effect (a judge's file may name such a feature)
        ablated = AblatedFeature(identity, identity.rsplit("/", 1)[0], int(feature["index"]), feature["site"],
                                 int(feature["layer"]), effect=None if cid == "circuit-a" else 0.25)
        scores = {"profession": 0.9, "gender": 0.8, "worst_group": 0.5}
        write_intervention(store, InterventionRecord(cid, cid, "toy", "auto", [ablated], scores, scores,
                                                     id=f"shift-{cid}"))
        write_behaviour(store, BehaviourRecord(id=f"b-{cid}", discovery="d", cluster=0, size=3, features="act",
                                               algorithm="kmeans", corpus="zoo", model="toy", circuit=cid))

    effects = store.run("MATCH (i:Intervention)-[r:ABLATES]->() RETURN i.id AS id, r.effect AS effect ORDER BY id")
    assert effects["effect"].to_list() == [None, 0.25]
    assert store.delete("circuit-a") == {"interventions": 1, "behaviours": 1}
    assert store.run("MATCH (i:Intervention) RETURN i.id AS id")["id"].to_list() == ["shift-circuit-b"]
    assert store.run("MATCH (b:Behaviour) RETURN b.id AS id")["id"].to_list() == ["b-circuit-b"]
    kept = store.run("MATCH (:Intervention)-[:ABLATES]->(f:Feature) RETURN f.id AS id")["id"].to_list()
    assert kept == [circuits["circuit-b"].feature_identity().drop_nulls()[0]]
    assert store.delete("circuit-b") == {"interventions": 1, "behaviours": 1}
    assert store.run("MATCH (n) RETURN count(n) AS n")["n"][0] == 0


def test_delete_unknown_circuit(store):
    from sfc_graph.errors import CircuitNotFound

    with pytest.raises(CircuitNotFound, match="no circuit 'nope'"):
        store.delete("nope")


class InjectedFailure(Exception):
    pass


def test_failure_in_the_middle_of_a_load_leaves_nothing(store_spec, tmp_path):
    build_circuit(tmp_path / "a", "circuit-a", task="t1", seed=1, feature_pool=range(10))
    b = build_circuit(tmp_path / "b", "circuit-b", task="t2", seed=2, feature_pool=range(10))
    with open_store(store_spec) as store:
        store.load(tmp_path / "a")
        before = store.stats()
        calls = []

        def fail_midway(done: int, total: int) -> None:
            calls.append(done)
            if len(calls) == 3:  # some tables written, others not
                raise InjectedFailure("injected")

        with pytest.raises(InjectedFailure):
            store.load(tmp_path / "b", progress=fail_midway)
        assert len(calls) == 3
        assert not store.has_circuit("circuit-b")
        assert store.stats().equals(before)
        # The same store object goes on working, and the next load completes.
        assert store.load(tmp_path / "b").loaded
        assert _canonical_edges(store.read_circuit("circuit-b").edges).equals(_canonical_edges(b.edges))


def test_sigkill_in_the_middle_of_a_load(tmp_path):
    """Embedded store: a process killed mid-load keeps what it had committed before (even when not yet
    checkpointed) and nothing of the interrupted circuit; the next load completes."""
    spec = str(tmp_path / "store")
    a = build_circuit(tmp_path / "a", "circuit-a", task="t1", seed=1)
    b = build_circuit(tmp_path / "b", "circuit-b", task="t2", seed=2, features_per_site=12, feature_pool=range(40))
    script = textwrap.dedent(
        f"""
        import os, signal
        from sfc_graph.store import open_store
        calls = []
        def kill_midway(done, total):
            calls.append(done)
            if len(calls) == 4:
                os.kill(os.getpid(), signal.SIGKILL)
        store = open_store({spec!r})
        store.load({str(tmp_path / "a")!r})
        store.load({str(tmp_path / "b")!r}, progress=kill_midway)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    with open_store(spec) as store:
        assert store.has_circuit("circuit-a") and not store.has_circuit("circuit-b")
        assert _count(store, "EDGE") == a.edges.height
        assert _count(store, "Feature") == len(_identities(a))
        assert _canonical_edges(store.read_circuit("circuit-a").edges).equals(_canonical_edges(a.edges))
        assert store.load(tmp_path / "b").loaded
        assert _canonical_nodes(store.read_circuit("circuit-b").nodes).equals(_canonical_nodes(b.nodes))


def test_load_many_groups_circuits_and_keeps_each_whole(store, tmp_path):
    """Several circuits in one transaction: shared features once, every circuit round-trips, a circuit
    listed twice or already stored is skipped, and results come back in input order."""
    bundles = [
        build_circuit(tmp_path / f"c{i}", f"circuit-{i}", task=f"t{i % 2}", seed=i, feature_pool=range(12))
        for i in range(4)
    ]
    store.load(bundles[0])
    results = store.load_many([bundles[1], bundles[0], bundles[2], bundles[1], bundles[3]], group_rows=400)
    assert [(r.circuit_id, r.loaded) for r in results] == [
        ("circuit-1", True), ("circuit-0", False), ("circuit-2", True), ("circuit-1", False), ("circuit-3", True)
    ]
    union = set().union(*(_identities(b) for b in bundles))
    assert _count(store, "Feature") == len(union)
    assert _count(store, "EDGE") == sum(b.edges.height for b in bundles)
    for bundle in bundles:
        back = store.read_circuit(bundle.circuit_id)
        assert _canonical_nodes(back.nodes).equals(_canonical_nodes(bundle.nodes))
        assert _canonical_edges(back.edges).equals(_canonical_edges(bundle.edges))
