"""The ``head`` bundle kind and the ``Head`` graph label: validation, loading, sharing and deletion."""

from __future__ import annotations

import polars as pl
import pytest

from sfc_graph.bundle import read_bundle, write_bundle
from sfc_graph.errors import BundleError, SfcError
from sfc_graph.naming import head_id as head_node_id
from sfc_graph.naming import model_node_identity, parse_node_id
from sfc_graph.store import open_store


def head_bundle(tmp_path, name, scores, *, task="copy", edges=()):
    nodes = pl.DataFrame(
        {
            "node_id": [head_node_id(layer, head) for (layer, head) in scores],
            "kind": ["head"] * len(scores),
            "site": ["attn"] * len(scores),
            "layer": [layer for layer, _ in scores],
            "index": [head for _, head in scores],
            "position": [-1] * len(scores),
            "effect": list(scores.values()),
            "n_pos_only_codes": [1] * len(scores),
        }
    )
    edge_frame = pl.DataFrame(
        {"src": [head_node_id(*a) for a, _, _ in edges], "dst": [head_node_id(*b) for _, b, _ in edges],
         "src_position": [-1] * len(edges), "dst_position": [-1] * len(edges), "weight": [w for *_, w in edges]},
        schema={"src": pl.String, "dst": pl.String, "src_position": pl.Int64, "dst_position": pl.Int64,
                "weight": pl.Float64},
    )
    manifest = {"circuit_id": name, "task": task, "model": "m", "dictionaries": {}, "method": "discrete-sae"}
    return write_bundle(tmp_path / name, manifest, nodes, edge_frame)


def test_head_ids_round_trip():
    assert parse_node_id(head_node_id(3, 11)) == ("head", "attn", 3, 11)
    assert model_node_identity("m", head_node_id(0, 1)) == "m/attn_0/h1"
    assert parse_node_id("attn_0/1").kind == "feature"  # a head id needs the h
    with pytest.raises(SfcError):
        parse_node_id("attn_0/hx")


def test_a_head_bundle_is_valid_and_keeps_extra_columns(tmp_path):
    bundle = head_bundle(tmp_path, "c1", {(0, 1): 0.5, (1, 0): 0.1}, edges=[((0, 1), (1, 0), 2.0)])
    again = read_bundle(bundle.path)
    assert again.nodes["n_pos_only_codes"].to_list() == [1, 1]
    assert again.edges.height == 1


@pytest.mark.parametrize(
    "change, message",
    [
        ({"node_id": ["attn_0/h2"]}, "node_id must be"),
        ({"site": ["mlp"]}, "site 'attn'"),
        ({"index": [None]}, "needs an index"),
    ],
)
def test_bad_head_rows_are_refused(tmp_path, change, message):
    nodes = pl.DataFrame({"node_id": ["attn_0/h1"], "kind": ["head"], "site": ["attn"], "layer": [0], "index": [1],
                          "position": [-1], "effect": [1.0]}, schema_overrides={"index": pl.Int64})
    nodes = nodes.with_columns(*(pl.Series(k, v, dtype=nodes.schema[k]) for k, v in change.items()))
    edges = pl.DataFrame(schema={"src": pl.String, "dst": pl.String, "src_position": pl.Int64,
                                 "dst_position": pl.Int64, "weight": pl.Float64})
    manifest = {"circuit_id": "x", "task": "t", "model": "m", "dictionaries": {}, "method": "discrete-sae"}
    with pytest.raises(BundleError, match=message):
        write_bundle(tmp_path / "x", manifest, nodes, edges)


def test_heads_are_shared_between_circuits_and_deleted_with_the_last(tmp_path):
    a = head_bundle(tmp_path, "a", {(0, 1): 0.5, (1, 0): 0.1}, task="copy", edges=[((0, 1), (1, 0), 2.0)])
    b = head_bundle(tmp_path, "b", {(0, 1): 0.3, (1, 1): 0.2}, task="ioi")
    store = open_store(tmp_path / "store")
    try:
        store.load_many([a, b])
        heads = store.run("MATCH (h:Head) RETURN h.id AS id, h.layer AS layer, h.head AS head ORDER BY id")
        assert heads["id"].to_list() == ["m/attn_0/h1", "m/attn_1/h0", "m/attn_1/h1"]
        shared = store.run("MATCH (c:Circuit)-[:CONTAINS]->(h:Head {id: 'm/attn_0/h1'}) RETURN c.id AS cid ORDER BY cid")
        assert shared["cid"].to_list() == ["a", "b"]
        back = store.read_circuit("a")
        assert back.nodes.sort("node_id")["effect"].to_list() == [0.5, 0.1]
        assert back.edges["weight"].to_list() == [2.0]
        store.delete("b")
        left = store.run("MATCH (h:Head) RETURN h.id AS id ORDER BY id")["id"].to_list()
        assert left == ["m/attn_0/h1", "m/attn_1/h0"]
        stats = dict(zip(store.stats()["name"].to_list(), store.stats()["count"].to_list()))
        assert stats["Head"] == 2
    finally:
        store.close()
