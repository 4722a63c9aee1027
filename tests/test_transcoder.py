"""Transcoder attribution (ingest/transcoder_attribution.py): the exact decomposition identity on the toy zoo, the
per-head terms against the model's own attention output, and the paper's path search on a hand-built tiny model
whose best path is planted; the transcoder-paths bundle through the store and its queries."""

from __future__ import annotations

import pytest
import torch

from sfc_graph.ingest.dictionaries import DictionaryInfo, DictionarySet, LoadedDictionary, Transcoder
from sfc_graph.ingest.model import wrap
from sfc_graph.ingest.transcoder_attribution import (
    PathSettings,
    decompose,
    feature_target,
    greedy_paths,
    head_target,
    logit_diff_target,
    run_trace,
)
from sfc_graph.ingest.transcoder_model import TranscoderModel
from sfc_graph.sites import Site

PROMPTS = [
    "the siege continued from the year 1255 to the year 12",
    "the keys near the cabinet",
    "then mary and john went to the store , john gave a drink to",
]


def _tokens(zoo, text):
    return zoo.model.to_tokens(text)[0].tolist()


@pytest.mark.parametrize("text", PROMPTS)
def test_pre_activation_decomposes_exactly(zoo, text):
    """pre_j(x) = Σ upstream transcoder features + heads per source position + token + position embedding + biases
    + transcoder errors, with every LayerNorm scale frozen; pre_j from the transcoder's own input (the model's cache)."""
    trace = run_trace(zoo, _tokens(zoo, text))
    checked = 0
    for layer in range(zoo.n_layers):
        for position in range(trace.n_positions):
            for index in torch.nonzero(trace.z[layer][position]).flatten().tolist()[:12]:
                target = feature_target(zoo, trace, layer, index, position)
                terms = decompose(zoo, trace, target)
                total = sum(t.value for t in terms)
                assert total == pytest.approx(target.value, abs=1e-4), (layer, index, position)
                # the upstream features are exactly the earlier layers' active ones, at this position
                assert {t.layer for t in terms if t.kind == "feature"} <= set(range(layer))
                assert all(t.position <= position for t in terms if t.kind == "head")
                checked += 1
    assert checked > 50
    # the logit difference too, and a head's term is the sum of its own upstream terms
    last = trace.n_positions - 1
    root = logit_diff_target(zoo, trace, answer=_tokens(zoo, "66")[1], wrong=_tokens(zoo, "49")[1], position=last)
    assert sum(t.value for t in decompose(zoo, trace, root)) == pytest.approx(root.value, abs=1e-4)
    for term in [t for t in decompose(zoo, trace, root) if t.kind == "head"][:20]:
        child = head_target(zoo, trace, root, term.layer, term.index, term.position)
        assert child.value == pytest.approx(term.value, abs=1e-5)
        assert sum(t.value for t in decompose(zoo, trace, child)) == pytest.approx(term.value, abs=1e-4)


def test_head_terms_sum_to_the_models_attention_output(zoo):
    """Independent of the decomposition's own algebra: per head, the terms over source positions add up to
    ``hook_z[p, h] @ W_O[h] · u`` read from the model's cache (the decomposition never reads hook_z)."""
    tokens = _tokens(zoo, PROMPTS[0])
    trace = run_trace(zoo, tokens)
    _, cache = zoo.model.run_with_cache(torch.tensor([tokens]))
    layer, position = 2, trace.n_positions - 1
    index = int(trace.z[layer][position].argmax())
    target = feature_target(zoo, trace, layer, index, position)
    terms = decompose(zoo, trace, target)
    for L in range(layer + 1):
        z = cache[f"blocks.{L}.attn.hook_z"][0, position]  # [head, d_head]
        for head in range(zoo.n_heads):
            expected = float(z[head] @ zoo.W_O(L, head) @ target.direction)
            got = sum(t.value for t in terms if t.kind == "head" and t.layer == L and t.index == head)
            assert got == pytest.approx(expected, abs=1e-5)


# --- a hand-built model with a planted best path -----------------------------------------------------------------

def _tiny():
    """Two layers, no LayerNorm, MLPs that *are* their transcoders (so every error term is zero).

    Prompt [0, 1, 2]: head 0.0 attends uniformly and carries token 1 (gain 6, pattern 1/3) to position 2 as
    2·e6; transcoder 0 feature 0 reads token 2 (e2) and writes 3·e7, feature 1 reads e6 and writes e7 (so it
    contributes 2); transcoder 1 feature 0 reads e7 (pre 5) and writes e5, the answer's logit direction.
    Best path from the logit difference (5 vs 4): output ← mlp_1/0 ← mlp_0/1 ← head 0.0 ← token 1 at position 1
    (capped scores 5, 2, 2, 2), ahead of output ← mlp_1/0 ← mlp_0/0 ← token 2 (5, 3, 1).
    """
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(n_layers=2, d_model=8, n_ctx=4, d_head=4, n_heads=1, d_mlp=4, d_vocab=6,
                                  act_fn="relu", normalization_type=None, positional_embedding_type="standard",
                                  device="cpu", seed=0)
    model = HookedTransformer(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        e = torch.eye(8)
        model.embed.W_E[:] = e[:6]
        model.blocks[0].attn.W_V[0, 1, 0] = 6.0
        model.blocks[0].attn.W_O[0, 0] = e[6]
        W_in0 = torch.zeros(8, 4)
        W_in0[2, 0], W_in0[6, 1] = 1.0, 1.0
        W_out0 = torch.zeros(4, 8)
        W_out0[0, 7], W_out0[1, 7] = 3.0, 1.0
        W_in1 = torch.zeros(8, 4)
        W_in1[7, 0] = 1.0
        W_out1 = torch.zeros(4, 8)
        W_out1[0, 5] = 1.0
        for block, (W_in, W_out) in zip(model.blocks, [(W_in0, W_out0), (W_in1, W_out1)]):
            block.mlp.W_in[:] = W_in
            block.mlp.W_out[:] = W_out
        model.unembed.W_U[:] = e[:, :6]
    handle = wrap(model, model_id="tiny")
    loaded = {}
    for layer, (W_in, W_out) in enumerate([(W_in0, W_out0), (W_in1, W_out1)]):
        tc = Transcoder(W_in.clone(), torch.zeros(4), W_out.clone(), torch.zeros(8),
                        input_hook=f"blocks.{layer}.hook_resid_mid", apply_b_dec_to_input=False)
        info = DictionaryInfo(id=f"tiny/mlp_{layer}/tc", kind="transcoder", architecture="transcoder", d_dict=4,
                              sha256=str(layer), path="-")
        loaded[Site("mlp", layer)] = LoadedDictionary(Site("mlp", layer), tc, info)
    return TranscoderModel(handle, DictionarySet(by_site=loaded))


def test_path_search_finds_the_planted_path():
    tm = _tiny()
    trace = run_trace(tm, [0, 1, 2])
    root = logit_diff_target(tm, trace, answer=5, wrong=4, position=2)
    assert root.value == pytest.approx(5.0)
    paths = greedy_paths(tm, trace, root, PathSettings(num_iters=4, num_branches=2))
    best = paths[-1][0]
    assert [s.key for s in best] == [("output", -1, -1, 2), ("feature", 1, 0, 2), ("feature", 0, 1, 2),
                                     ("head", 0, 0, 2), ("token", -1, 1, 1)]
    assert [round(s.contribution, 5) for s in best[1:]] == [5.0, 2.0, 2.0, 2.0]
    runner_up = paths[2][1]  # after three steps the second path goes through feature 0 to token 2
    assert [s.key for s in runner_up] == [("output", -1, -1, 2), ("feature", 1, 0, 2), ("feature", 0, 0, 2),
                                          ("token", -1, 2, 2)]
    # input-invariant parts: pullback e7·e7 = 1 into mlp_1/0; token 1 through the head's OV into mlp_0/1 = 6
    # (activation 1, pattern 1/3 -> contribution 2)
    assert best[2].invariant == pytest.approx(1.0) and best[2].activation == pytest.approx(2.0)
    assert best[4].invariant == pytest.approx(6.0)
    # the capped beam: without the cap the same path wins here, and the cap never raises a score
    assert all(s.score <= s.contribution + 1e-9 for path in paths[-1] for s in path[1:])
    # as bundle tables: the head sits at the position it writes to, the token edge crosses positions
    from sfc_graph.ingest.transcoder_circuit import paths_to_tables

    nodes, edges = paths_to_tables(tm, trace, paths)
    assert {"output", "feature", "head", "token"} <= set(nodes["kind"].to_list())
    edge = edges.filter((edges["src"] == "token/1") & (edges["dst"] == "attn_0/h0")).row(0, named=True)
    assert (edge["src_position"], edge["dst_position"]) == (1, 2)
    assert edge["weight"] == pytest.approx(2.0) and edge["weight_invariant"] == pytest.approx(6.0)
    out_of_head = edges.filter(edges["src"] == "attn_0/h0")["weight_invariant"].to_list()
    assert out_of_head == [None]  # a head has no input-invariant weight of its own


def test_weight_graph_of_the_tiny_model_holds_the_planted_weights():
    from sfc_graph.ingest.weights import WeightSettings, build_weight_graph

    graph = build_weight_graph(_tiny(), WeightSettings(top_k=2, n_tokens=1))
    fe, te = graph.feature_edges, graph.token_edges
    resid = fe.filter((fe["kind"] == "resid") & (fe["dst_layer"] == 1) & (fe["dst_index"] == 0)).sort("rank")
    assert resid.select("src_index", "weight").rows()[0] == (0, pytest.approx(3.0))  # W_dec0[0] · e7
    assert resid.select("src_index", "weight").rows()[1] == (1, pytest.approx(1.0))
    ov = te.filter((te["kind"] == "embed_ov") & (te["site"] == "mlp_0") & (te["index"] == 1) & (te["via_layer"] == 0))
    assert ov.select("token", "weight").rows() == [(1, pytest.approx(6.0))]
    direct = te.filter((te["kind"] == "embed") & (te["site"] == "mlp_0") & (te["index"] == 0))
    assert direct.select("token", "weight").rows() == [(2, pytest.approx(1.0))]


def test_transcoder_circuit_bundle_loads_and_explains_its_edges(zoo, tmp_path):
    from sfc_graph.bundle import read_bundle
    from sfc_graph.ingest.tasks import load_task
    from sfc_graph.ingest.transcoder_circuit import TranscoderCircuitSettings, compute_transcoder_circuit
    from sfc_graph.store import open_store

    circuit = compute_transcoder_circuit(zoo.handle, _zoo_dicts(zoo), load_task("greater_than"),
                                         TranscoderCircuitSettings(num_iters=3, num_branches=4))
    bundle = read_bundle(circuit.write(tmp_path / "b").path)
    assert bundle.manifest["method"] == "transcoder-paths"
    kinds = set(bundle.nodes["kind"].to_list())
    assert {"output", "feature"} <= kinds <= {"output", "feature", "head", "token", "error"}
    info = bundle.manifest["transcoder_paths"]
    assert sum(info["root_decomposition"].values()) == pytest.approx(info["root_target"]["value"], abs=1e-4)
    with open_store(tmp_path / "store") as store:
        store.load(bundle)
        edges = bundle.edges.filter(bundle.edges["src"].str.starts_with("mlp_")
                                    & bundle.edges["dst"].str.starts_with("mlp_"))
        assert edges.height
        src, dst, sp, dp, weight = edges.select("src", "dst", "src_position", "dst_position", "weight").row(0)
        row = store.query("explain-edge", circuit=bundle.circuit_id, src=f"{src}@{sp}", dst=f"{dst}@{dp}").row(0, named=True)
        assert row["activation"] * row["weight_invariant"] * row["factor"] == pytest.approx(weight, rel=1e-6)
        # the frozen factor of a feature -> feature edge is 1 / the downstream LayerNorm scale
        trace = run_trace(zoo, info["tokens"])
        layer = int(dst.split("/")[0].split("_")[1])
        assert row["factor"] == pytest.approx(1.0 / float(trace.mlp_scale[layer][dp]), rel=1e-5)
        tokens = bundle.nodes.filter(bundle.nodes["kind"] == "token").height
        assert store.query("top-nodes", circuit=bundle.circuit_id, kind="token", k=100).height == tokens
        # the weight graph lives on the same shared nodes and outlives the circuit
        from sfc_graph.ingest.weights import WeightSettings, build_weight_graph
        from sfc_graph.ingest.weights_store import load_weight_graph

        load_weight_graph(store, build_weight_graph(zoo, WeightSettings(top_k=4, n_tokens=3)))
        count = "MATCH ()-[w:WEIGHT]->() RETURN count(w) AS n"
        before = store.run(count)["n"][0]
        store.delete(bundle.circuit_id)
        assert store.run(count)["n"][0] == before > 0


def _zoo_dicts(zoo) -> DictionarySet:
    by_site = {Site("mlp", layer): LoadedDictionary(Site("mlp", layer), zoo.transcoders[layer], zoo.infos[layer])
               for layer in range(zoo.n_layers)}
    return DictionarySet(by_site=by_site)


def test_cli_refuses_bad_input_in_one_sentence(tmp_path):
    from click.testing import CliRunner

    from sfc_graph.cli.app import main

    runner = CliRunner()
    result = runner.invoke(main, ["weights", "build", "--model", "toy-zoo", "--dict", "toy-zoo", "--out",
                                  str(tmp_path / "wg"), "-q", "--threads", "1"])
    assert result.exit_code == 1 and "transcoder" in result.output and "Traceback" not in result.output
    (tmp_path / "exists").mkdir()
    result = runner.invoke(main, ["weights", "build", "--model", "toy-zoo", "--dict", "toy-zoo-transcoders", "--out",
                                  str(tmp_path / "exists"), "-q"])
    assert result.exit_code == 1 and "already exists" in result.output
    result = runner.invoke(main, ["weights", "circuit", "--model", "toy-zoo", "--dict", "toy-zoo-transcoders",
                                  "--task", "greater_than", "--root", "resid_9/1", "--out", str(tmp_path / "c"),
                                  "--threads", "1"])
    assert result.exit_code == 1 and "--root" in result.output and not (tmp_path / "c").exists()
    result = runner.invoke(main, ["weights", "load", str(tmp_path / "exists"), "--store", str(tmp_path / "s")])
    assert result.exit_code == 1 and "not a weight graph" in result.output
