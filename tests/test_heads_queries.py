"""The head queries (head-scores, head-circuits, shared-heads) against a recomputation in plain Python over the
bundles, on every backend; and `sfc load` / export of head bundles."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from sfc_graph.bundle import write_bundle
from sfc_graph.naming import head_id, model_node_identity

N_LAYERS, N_HEADS = 3, 4


def _bundle(root, name, task, method, scores):
    ids = [head_id(layer, head) for layer in range(N_LAYERS) for head in range(N_HEADS)]
    nodes = pl.DataFrame({
        "node_id": ids, "kind": ["head"] * len(ids), "site": ["attn"] * len(ids),
        "layer": [layer for layer in range(N_LAYERS) for _ in range(N_HEADS)],
        "index": [head for _ in range(N_LAYERS) for head in range(N_HEADS)],
        "position": [-1] * len(ids), "effect": list(scores),
    })
    edges = pl.DataFrame({"src": [ids[0]], "dst": [ids[5]], "src_position": [-1], "dst_position": [-1],
                          "weight": [1.5]})
    manifest = {"circuit_id": name, "task": task, "model": "m", "dictionaries": {}, "method": method}
    return write_bundle(root / name, manifest, nodes, edges)


@pytest.fixture
def head_bundles(tmp_path):
    rng = np.random.default_rng(7)
    specs = [("ioi-sae", "ioi", "discrete-sae"), ("ioi-exact", "ioi", "head-exact"),
             ("gt-sae", "greater_than", "discrete-sae"), ("gt-exact", "greater_than", "head-exact")]
    return {name: _bundle(tmp_path, name, task, method, np.round(rng.normal(size=N_LAYERS * N_HEADS), 3))
            for name, task, method in specs}


def _ranks(bundle):
    """{head identity: (score, rank)} with rank = 1 + the number of heads with a larger |score|."""
    scores = dict(zip(bundle.nodes["node_id"], bundle.nodes["effect"]))
    return {model_node_identity("m", node): (s, 1 + sum(abs(o) > abs(s) for o in scores.values()))
            for node, s in scores.items()}


def test_head_scores(store, head_bundles):
    store.load_many(list(head_bundles.values()))
    got = store.query("head-scores", circuit="ioi-exact", k=5)
    expected = sorted(_ranks(head_bundles["ioi-exact"]).items(), key=lambda kv: -abs(kv[1][0]))[:5]
    assert got["head"].to_list() == [h for h, _ in expected]
    assert got["score"].to_list() == pytest.approx([s for _, (s, _) in expected])
    assert got["rank"].to_list() == [r for _, (_, r) in expected] == [1, 2, 3, 4, 5]
    assert got["node_id"].to_list() == [h.split("/", 1)[1] for h, _ in expected]
    limited = store.query("head-scores", circuit="ioi-exact", k=20, min_score=1.0)
    assert sorted(limited["head"].to_list()) == sorted(h for h, (s, _) in _ranks(head_bundles["ioi-exact"]).items()
                                                       if abs(s) >= 1.0)


def test_head_circuits(store, head_bundles):
    store.load_many(list(head_bundles.values()))
    head = "m/attn_1/h2"
    got = store.query("head-circuits", head=head)
    expected = sorted(((name, b.task, b.manifest["method"], *_ranks(b)[head], N_LAYERS * N_HEADS)
                       for name, b in head_bundles.items()), key=lambda r: (r[1], r[2], r[0]))
    assert [tuple(r) for r in got.select("circuit", "task", "method").iter_rows()] == [r[:3] for r in expected]
    assert got["score"].to_list() == pytest.approx([r[3] for r in expected])
    assert got["rank"].to_list() == [r[4] for r in expected]
    assert set(got["n_heads"].to_list()) == {N_LAYERS * N_HEADS}


@pytest.mark.parametrize("top_k, min_count", [(3, 2), (5, 2), (4, 3)])
def test_shared_heads_over_circuits(store, head_bundles, top_k, min_count):
    store.load_many(list(head_bundles.values()))
    got = store.query("shared-heads", circuits=list(head_bundles), top_k=top_k, min_count=min_count)
    members: dict[str, list[tuple[str, float, int]]] = {}
    for name in sorted(head_bundles):
        for head, (score, rank) in _ranks(head_bundles[name]).items():
            if rank <= top_k:
                members.setdefault(head, []).append((name, score, rank))
    expected = {h: m for h, m in members.items() if len(m) >= min_count}
    assert sorted(got["head"].to_list()) == sorted(expected)
    for row in got.iter_rows(named=True):
        want = expected[row["head"]]
        assert row["count"] == len(want)
        assert row["circuit_ids"] == [m[0] for m in want]
        assert row["scores"] == pytest.approx([m[1] for m in want])
        assert row["ranks"] == [m[2] for m in want]
    counts = got["count"].to_list()
    assert counts == sorted(counts, reverse=True)


def test_shared_heads_over_tasks_counts_tasks(store, head_bundles):
    store.load_many(list(head_bundles.values()))
    got = store.query("shared-heads", tasks=["ioi", "greater_than"], top_k=4, min_count=2)
    for row in got.iter_rows(named=True):
        tasks = {head_bundles[c].task for c in row["circuit_ids"]}
        assert row["count"] == len(tasks) == 2


def test_a_head_circuit_reads_back_and_exports(store, head_bundles, tmp_path):
    from sfc_graph.export import circuit_to_networkx

    store.load_many(list(head_bundles.values()))
    back = store.read_circuit("gt-sae")
    original = head_bundles["gt-sae"].nodes.sort("node_id")
    assert back.nodes["node_id"].to_list() == original["node_id"].to_list()
    assert back.nodes["effect"].to_list() == pytest.approx(original["effect"].to_list())
    graph = circuit_to_networkx(store, "gt-sae")
    assert graph.number_of_nodes() == N_LAYERS * N_HEADS and graph.number_of_edges() == 1
    assert graph.nodes["attn_1/h1"]["kind"] == "head"
