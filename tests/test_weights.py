"""The input-invariant weight graph (ingest/weights.py) against an independent numpy computation from the raw
weights of the toy zoo, and the same graph in the store (both backends) and through its queries."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from sfc_graph.ingest.weights import WeightSettings, build_weight_graph, feature_edges
from sfc_graph.ingest.weights_store import (
    load_weight_graph,
    read_weight_graph,
    weight_graph_rows,
    weight_graphs,
    write_weight_graph,
)


@pytest.fixture(scope="module")
def graph(zoo):
    return build_weight_graph(zoo, WeightSettings(top_k=8, n_tokens=5, block=100))


# --- the oracle: raw weights, numpy, the LayerNorm convention written out by hand -------------------------------

def _raw(zoo):
    """Raw weights as float64 numpy arrays, read straight from the modules' state."""
    model = zoo.model
    sd = {k: v.detach().double().numpy() for k, v in model.state_dict().items()}
    n, d = zoo.n_layers, zoo.d_model
    C = np.eye(d) - np.ones((d, d)) / d  # LayerNorm centring
    tcs = [{k: v.detach().double().numpy() for k, v in zoo.transcoders[l].tensors().items()} for l in range(n)]
    return sd, C, tcs


def _oracle_resid(zoo, src, dst):
    sd, C, tcs = _raw(zoo)
    # the zoo's transcoders read ln2.hook_normalized = C x / s: centring, no LN weight
    return tcs[src]["W_dec"] @ C @ tcs[dst]["W_enc"]


def _oracle_ov(zoo, src, layer, head, dst):
    sd, C, tcs = _raw(zoo)
    w1 = sd[f"blocks.{layer}.ln1.w"]
    W_V, W_O = sd[f"blocks.{layer}.attn.W_V"][head], sd[f"blocks.{layer}.attn.W_O"][head]
    return tcs[src]["W_dec"] @ C @ np.diag(w1) @ W_V @ W_O @ C @ tcs[dst]["W_enc"]


def _top_abs(column: np.ndarray, k: int) -> set[int]:
    return set(np.argsort(-np.abs(column))[:k].tolist())


def test_resid_pullbacks_match_raw_weights(zoo, graph):
    fe = graph.feature_edges.filter(pl.col("kind") == "resid")
    for dst in range(1, zoo.n_layers):
        dense = np.concatenate([_oracle_resid(zoo, src, dst) for src in range(dst)])  # rows: (src, i)
        offsets = np.cumsum([0] + [zoo.d_sae(s) for s in range(dst)])
        for j in (0, 17, zoo.d_sae(dst) - 1):
            kept = fe.filter((pl.col("dst_layer") == dst) & (pl.col("dst_index") == j))
            rows = {int(offsets[s] + i): w for s, i, w in kept.select("src_layer", "src_index", "weight").iter_rows()}
            assert set(rows) == _top_abs(dense[:, j], 8)
            for row, weight in rows.items():
                assert weight == pytest.approx(dense[row, j], abs=1e-4)
            assert sorted(kept["rank"].to_list()) == list(range(1, 9))


def test_ov_terms_match_raw_weights(zoo, graph):
    fe = graph.feature_edges.filter(pl.col("kind") == "ov")
    dst, j = 2, 5
    candidates = {}
    for src in range(dst):
        for layer in range(src + 1, dst + 1):
            for head in range(zoo.n_heads):
                column = _oracle_ov(zoo, src, layer, head, dst)[:, j]
                for i, value in enumerate(column):
                    candidates[(src, i, layer, head)] = value
    expected = sorted(candidates, key=lambda key: -abs(candidates[key]))[:8]
    kept = fe.filter((pl.col("dst_layer") == dst) & (pl.col("dst_index") == j))
    got = {(s, i, l, h): w for s, i, l, h, w in kept.select("src_layer", "src_index", "via_layer", "via_head", "weight").iter_rows()}
    assert set(got) == set(expected)
    for key, weight in got.items():
        assert weight == pytest.approx(candidates[key], abs=1e-4)


def test_blocks_and_floor_do_not_change_the_answer(zoo, graph):
    small_blocks = feature_edges(zoo, WeightSettings(top_k=8, block=7))
    one_block = graph.feature_edges
    key = ["src_layer", "src_index", "dst_layer", "dst_index", "kind", "via_layer", "via_head"]
    assert small_blocks.sort(key).select(key).equals(one_block.sort(key).select(key))
    floor = 0.5
    with_floor = feature_edges(zoo, WeightSettings(top_k=2, floor=floor, block=64))
    dense = _oracle_resid(zoo, 0, 1)
    above = {(int(i), int(j)) for i, j in zip(*np.nonzero(np.abs(dense) >= floor))}
    got = with_floor.filter((pl.col("kind") == "resid") & (pl.col("src_layer") == 0) & (pl.col("dst_layer") == 1))
    pairs = set(zip(got["src_index"].to_list(), got["dst_index"].to_list()))
    assert above and above <= pairs  # everything above the floor, plus the top 2 of every target
    assert len(pairs - above) <= 2 * zoo.d_sae(1)


def test_de_embeddings_and_logit_lens_match_raw_weights(zoo, graph):
    sd, C, tcs = _raw(zoo)
    te = graph.token_edges
    W_E = sd["embed.W_E"]
    direct = W_E @ C @ tcs[1]["W_enc"]
    kept = te.filter((pl.col("kind") == "embed") & (pl.col("site") == "mlp_1") & (pl.col("index") == 3)).sort("rank")
    assert kept["token"].to_list() == np.argsort(-direct[:, 3])[:5].tolist()
    np.testing.assert_allclose(kept["weight"].to_numpy(), np.sort(direct[:, 3])[::-1][:5], atol=1e-4)
    w1 = sd["blocks.1.ln1.w"]
    through = W_E @ C @ np.diag(w1) @ sd["blocks.1.attn.W_V"][2] @ sd["blocks.1.attn.W_O"][2] @ C @ tcs[2]["W_enc"]
    kept = te.filter((pl.col("kind") == "embed_ov") & (pl.col("site") == "mlp_2") & (pl.col("index") == 9)
                     & (pl.col("via_layer") == 1) & (pl.col("via_head") == 2)).sort("rank")
    assert kept["token"].to_list() == np.argsort(-through[:, 9])[:5].tolist()
    # logit lens: the final LayerNorm's centring and weight, then W_U
    lens = tcs[0]["W_dec"] @ C @ np.diag(sd["ln_final.w"]) @ sd["unembed.W_U"]
    kept = te.filter((pl.col("kind") == "logit") & (pl.col("site") == "mlp_0") & (pl.col("index") == 11))
    top = kept.filter(pl.col("weight") >= 0).sort("rank")["token"].to_list()
    bottom = kept.filter(pl.col("weight") < 0).sort("rank")["token"].to_list()
    assert top == np.argsort(-lens[11])[:5].tolist()
    assert bottom == np.argsort(lens[11])[:5].tolist()
    # an SAE's features get a logit lens too (any dictionary feature)
    sae = zoo.others[[s for s in zoo.others if s.name == "resid_1"][0]].dictionary
    lens_sae = sae.W_dec.double().numpy() @ C @ np.diag(sd["ln_final.w"]) @ sd["unembed.W_U"]
    kept = te.filter((pl.col("kind") == "logit") & (pl.col("site") == "resid_1") & (pl.col("index") == 4)
                     & (pl.col("weight") >= 0)).sort("rank")
    assert kept["token"].to_list() == np.argsort(-lens_sae[4])[:5].tolist()


def test_weight_graph_directory_round_trip_and_refuses_tampering(graph, tmp_path):
    from sfc_graph.errors import BundleError

    out = write_weight_graph(graph, tmp_path / "wg")
    back = read_weight_graph(out)
    assert back.feature_edges.equals(graph.feature_edges) and back.token_edges.equals(graph.token_edges)
    assert "fixed scale" in back.manifest["layernorm"]
    with pytest.raises(BundleError, match="already exists"):
        write_weight_graph(graph, out)
    (out / "tokens.parquet").write_bytes(b"not parquet")
    with pytest.raises(BundleError, match="tokens.parquet"):
        read_weight_graph(out)


def _stored_weights(store) -> pl.DataFrame:
    return store.run(
        "MATCH (a)-[w:WEIGHT]->(b) RETURN a.id AS src, b.id AS dst, w.kind AS kind, w.via AS via, "
        "w.weight AS weight, w.rank_in AS rank_in, w.rank_out AS rank_out"
    ).sort("src", "dst", "kind", "via", nulls_last=True)


def test_the_store_holds_the_weight_graph_on_shared_nodes(graph, store):
    """Runs on every backend (Neo4j too when SFC_NEO4J_URI is set): both must hold exactly the rows computed."""
    assert load_weight_graph(store, graph) is True
    assert load_weight_graph(store, graph) is False  # a re-load writes nothing
    stored = _stored_weights(store)
    rows = weight_graph_rows(graph)
    expected = pl.concat([frame for key, frame in rows.rels.items() if key[0] == "WEIGHT"]).select(
        pl.col("from").alias("src"), pl.col("to").alias("dst"), "kind", "via", "weight", "rank_in", "rank_out"
    ).sort("src", "dst", "kind", "via", nulls_last=True)
    assert stored.height == graph.feature_edges.height + graph.token_edges.height
    assert stored.select("src", "dst", "kind", "via", "rank_in", "rank_out").equals(
        expected.select("src", "dst", "kind", "via", "rank_in", "rank_out"))
    np.testing.assert_allclose(stored["weight"].to_numpy(), expected["weight"].to_numpy(), rtol=1e-6)
    assert weight_graphs(store)["id"].to_list() == [graph.manifest["weight_graph_id"]]


def test_weight_queries_against_the_tables(zoo, graph, store):
    load_weight_graph(store, graph)
    dictionary = zoo.infos[2].id
    feature = f"{dictionary}/5"
    found = store.query("weight-neighbors", feature=feature, direction="in", kind="resid", k=3)
    fe = graph.feature_edges.filter((pl.col("dst_layer") == 2) & (pl.col("dst_index") == 5) & (pl.col("kind") == "resid"))
    oracle = fe.sort(pl.col("weight").abs(), descending=True).head(3)
    assert found["other"].to_list() == [f"{zoo.infos[s].id}/{i}" for s, i in oracle.select("src_layer", "src_index").iter_rows()]
    assert found["rank"].to_list() == [1, 2, 3]
    outs = store.query("weight-neighbors", feature=f"{zoo.infos[0].id}/3", direction="out", kind="resid", k=2)
    fe0 = graph.feature_edges.filter((pl.col("src_layer") == 0) & (pl.col("src_index") == 3) & (pl.col("kind") == "resid"))
    assert set(outs["weight"].round(5).to_list()) == set(
        fe0.sort(pl.col("weight").abs(), descending=True).head(2)["weight"].cast(pl.Float64).round(5).to_list())
    de = store.query("de-embedding", feature=feature, k=2, via="direct")
    te = graph.token_edges.filter((pl.col("kind") == "embed") & (pl.col("site") == "mlp_2") & (pl.col("index") == 5))
    assert de["token"].to_list() == te.sort("rank").head(2)["token"].to_list()
    assert de["text"].to_list() == [zoo.token_text(t) for t in de["token"].to_list()]
    lens = store.query("logit-lens", feature=feature, k=2)
    assert lens["side"].to_list() == ["top", "top", "bottom", "bottom"]
