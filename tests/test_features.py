"""Feature dashboards and labels: the computation against hand-written hooks, storage, labels, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
import torch
from click.testing import CliRunner

from sfc_graph.cli import main
from sfc_graph.errors import FeatureError
from sfc_graph.features import (
    draft_label,
    get_info,
    labels_for,
    read_neuronpedia_explanations,
    set_label,
    write_dashboards,
)
from sfc_graph.store import open_store

from builders import build_circuit

SENTENCES = [
    "the keys to the cabinet are on the table",
    "the key to the cabinets is on the table",
    "the dog that the cats like runs",
    "tom and john went to the park , and john gave a book to",
    "the war lasted from the year 1732 to the year 17",
    "the boys near the car sing",
    "the girl near the cars sings",
    "the teachers smile",
]


# --- labels drafted from a dashboard (pure) ----------------------------------------------------------
def _ex(tokens, at, behaviour=None):
    return {"tokens": tokens, "acts": [1.0] * len(tokens), "at": at, "behaviour": behaviour}


def test_draft_label_names_the_dominant_token_its_context_and_behaviour():
    dash = {"examples": [_ex(["the", "keys", "are"], 2, "agreement"), _ex(["the", "keys", "are"], 2, "agreement"),
                         _ex(["a", "keys", "are"], 2, "agreement"), _ex(["the", "dogs", "run"], 2, "none")]}
    assert draft_label(dash) == '"are" after "keys" [agreement]'


def test_draft_label_without_a_dominant_token_lists_the_common_ones_or_falls_back_to_the_logit_lens():
    spread = {"examples": [_ex([p, t], 1) for p, t in zip("vwxyz", ["is", "is", "are", "was", "were"])]}
    assert draft_label(spread) == '"is" / "are" / "was"'
    mixed = {"examples": [_ex([p, t], 1) for p, t in zip("stuvwxyz", "abcdefgh")],
             "top_logits": [["were", 2.0], ["are", 1.0]]}
    assert draft_label(mixed) == "mixed tokens, promotes were, are"
    assert draft_label({"examples": []}).startswith("dead")


# --- Neuronpedia explanations -------------------------------------------------------------------------
def test_neuronpedia_export_maps_to_feature_ids(tmp_path):
    export = [
        {"modelId": "gpt2-small", "layer": "6-res-jb", "index": "17", "description": " plural nouns "},
        {"modelId": "gpt2-small", "layer": "6-res-jb", "index": "17", "description": "a second explanation"},
        {"modelId": "gpt2-small", "layer": "7-res-jb", "index": 3, "description": "years"},
    ]
    path = tmp_path / "export.json"
    path.write_text(json.dumps(export))
    frame = read_neuronpedia_explanations(path)
    assert dict(zip(frame["id"], frame["label"])) == {"gpt2-small/6-res-jb/17": "plural nouns",
                                                     "gpt2-small/7-res-jb/3": "years"}
    mapped = read_neuronpedia_explanations(path, mapping={"gpt2-small/6-res-jb": "ours/resid_6/sae"})
    assert set(mapped["id"]) == {"ours/resid_6/sae/17", "gpt2-small/7-res-jb/3"}
    lines = tmp_path / "export.jsonl"
    lines.write_text("\n".join(json.dumps(r) for r in export))
    assert read_neuronpedia_explanations(lines, dictionary="d").height == 2
    (tmp_path / "bad.json").write_text('[{"modelId": "m", "layer": "l"}]')
    with pytest.raises(FeatureError, match="index"):
        read_neuronpedia_explanations(tmp_path / "bad.json")


# --- the computation, against hand-written hooks --------------------------------------------------------
@pytest.fixture(scope="module")
def zoo_dashboards(tmp_path_factory):
    from sfc_graph import zoo
    from sfc_graph.ingest.dashboards import DashboardSettings, compute_dashboards, load_corpus
    from sfc_graph.ingest.dictionaries import load_dictionary_set
    from sfc_graph.ingest.model import load_model

    torch.set_num_threads(1)
    corpus_file = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    corpus_file.write_text("\n".join(SENTENCES) + "\n")
    handle = load_model("toy-zoo", device="cpu")
    site_path = zoo.dictionary_path("resid_0")
    dictionaries = load_dictionary_set([f"resid_0={site_path}"], n_layers=handle.n_layers, d_model=handle.d_model,
                                       model_id=handle.model_id)
    corpus = load_corpus(str(corpus_file), handle)
    settings = DashboardSettings(k=5, before=3, after=2, batch_size=3)  # several batches: the running top-k merges
    rows = compute_dashboards(handle, dictionaries, corpus, settings=settings)
    return handle, site_path, rows, settings


def _reference_codes(handle, site_path):
    """Codes at resid_0 for every sentence, by run_with_cache and the SAE formula written out."""
    from safetensors.torch import load_file

    w = load_file(str(site_path / "sae_weights.safetensors"))
    cfg = json.loads((site_path / "cfg.json").read_text())
    out = []
    for text in SENTENCES:
        tokens = handle.model.to_tokens(text, prepend_bos=True)
        _, cache = handle.model.run_with_cache(tokens, names_filter="blocks.0.hook_resid_post")
        x = cache["blocks.0.hook_resid_post"][0]
        if cfg.get("apply_b_dec_to_input", True):
            x = x - w["b_dec"]
        codes = torch.relu(x @ w["W_enc"] + w["b_enc"])
        out.append((handle.model.to_str_tokens(tokens[0]), codes[1:]))  # drop <bos>
    return out, w


def test_dashboards_match_an_independent_recomputation(zoo_dashboards):
    handle, site_path, rows, settings = zoo_dashboards
    reference, weights = _reference_codes(handle, site_path)
    all_codes = torch.cat([codes for _, codes in reference])  # [tokens, d]
    d = all_codes.shape[1]
    assert rows.height == d
    rows = rows.sort("latent")
    density = (all_codes > 0).float().mean(0)
    assert rows["density"].to_list() == pytest.approx(density.tolist(), abs=1e-6)
    assert rows["max_activation"].to_list() == pytest.approx(all_codes.max(0).values.tolist(), rel=1e-4, abs=1e-6)
    for latent in torch.argsort(density, descending=True)[:12].tolist():
        dash = json.loads(rows["dashboard"][latent])
        # the top-k peaks are the k largest activations of the corpus, in order
        expected = torch.sort(all_codes[:, latent], descending=True).values[: settings.k]
        expected = [v for v in expected.tolist() if v > 0]
        assert [ex["activation"] for ex in dash["examples"]] == pytest.approx(expected, abs=1e-3)
        for ex in dash["examples"]:
            words, codes = reference[ex["doc"]]  # the corpus keeps file order (batches are re-ordered, not docs)
            peak = ex["position"] - 1
            assert ex["tokens"][ex["at"]] == words[ex["position"]]
            assert ex["acts"][ex["at"]] == pytest.approx(float(codes[peak, latent]), abs=1e-3)
            lo = max(1, ex["position"] - settings.before)
            hi = min(len(words) - 1, ex["position"] + settings.after)
            assert ex["tokens"] == list(words[lo: hi + 1])
            assert ex["acts"] == pytest.approx(codes[lo - 1: hi, latent].tolist(), abs=1e-3)
    lens = weights["W_dec"] @ handle.model.W_U.detach()
    vocab = handle.model.to_str_tokens(torch.arange(lens.shape[1]))
    for latent in (0, 5, d - 1):
        top = torch.topk(lens[latent], 8).indices.tolist()
        assert rows["top_logits"][latent].to_list() == [vocab[i] for i in top]
        bottom = torch.topk(-lens[latent], 8).indices.tolist()
        assert rows["bottom_logits"][latent].to_list() == [vocab[i] for i in bottom]


# --- storage and labels ------------------------------------------------------------------------------------
def _rows(dictionary: str, latents: list[int], label: str = "auto label") -> pl.DataFrame:
    return pl.DataFrame({
        "id": [f"{dictionary}/{i}" for i in latents], "dictionary": [dictionary] * len(latents), "latent": latents,
        "site": ["resid"] * len(latents), "layer": [0] * len(latents), "label": [label] * len(latents),
        "label_source": ["auto"] * len(latents), "density": [0.1 * i for i in latents],
        "max_activation": [1.0] * len(latents), "mean_activation": [0.5] * len(latents),
        "top_tokens": [["a", "b"]] * len(latents), "top_logits": [["c"]] * len(latents),
        "bottom_logits": [["d"]] * len(latents), "dashboard": [json.dumps({"examples": []})] * len(latents),
        "corpus": ["test"] * len(latents), "built_at": ["now"] * len(latents),
    })


def test_store_keeps_hand_labels_across_rebuilds_and_circuit_deletes(tmp_path, store):
    bundle = build_circuit(tmp_path / "c1", "c1")
    store.load(bundle)
    dictionary = bundle.manifest["dictionaries"]["resid_0"]["id"]
    feature = bundle.nodes.filter(pl.col("node_id").str.starts_with("resid_0/") & (pl.col("kind") == "feature"))
    latent = int(feature["index"][0])
    fid = f"{dictionary}/{latent}"
    assert write_dashboards(store, _rows(dictionary, [latent, 63])) == 2
    set_label(store, fid, "  plural   subject ")
    write_dashboards(store, _rows(dictionary, [latent, 63], label="redrafted"), batch_rows=1)  # two transactions
    info = get_info(store, fid)
    assert (info["label"], info["label_source"]) == ("plural subject", "manual")
    assert get_info(store, f"{dictionary}/63")["label"] == "redrafted"
    store.delete("c1")
    assert labels_for(store, [fid])[fid]["label"] == "plural subject"
    with pytest.raises(FeatureError, match="no feature"):
        set_label(store, f"{dictionary}/999", "x")


def test_feature_search_query_and_label_columns(tmp_path, store):
    bundle = build_circuit(tmp_path / "c1", "c1")
    store.load(bundle)
    features = bundle.nodes.filter(pl.col("kind") == "feature")
    dictionaries = bundle.manifest["dictionaries"]
    ids = [f"{dictionaries[n.split('/')[0]]['id']}/{i}" for n, i in zip(features["node_id"], features["index"])]
    set_label(store, ids[0], "Plural Subject tracker")
    set_label(store, ids[1], "years before the century")
    found = store.query("feature-search", text="plural subj")
    assert found["feature"].to_list() == [ids[0]]
    assert found["label"].to_list() == ["Plural Subject tracker"]
    assert found["n_circuits"].to_list() == [1]
    top = store.query("top-nodes", circuit="c1", k=1000)
    labelled = dict(zip(top["feature"], top["label"]))
    assert labelled[ids[0]] == "Plural Subject tracker" and labelled[ids[1]] == "years before the century"
    assert sum(v is not None for v in labelled.values()) == 2


def test_cli_build_show_and_label(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(SENTENCES) + "\n")
    store = str(tmp_path / "store")
    runner = CliRunner()
    result = runner.invoke(main, ["features", "build", "--store", store, "--corpus", str(corpus), "--dict",
                                  "resid_1=" + _zoo_site("resid_1"), "-q"])
    assert result.exit_code == 0, result.output
    d_sae = json.loads((Path(_zoo_site("resid_1")) / "cfg.json").read_text())["d_sae"]
    assert f"stored {d_sae:,} feature dashboards" in result.output
    with open_store(store, read_only=True) as opened:
        busiest = opened.run("MATCH (i:FeatureInfo) RETURN i.id AS id ORDER BY i.density DESC LIMIT 1")["id"][0]
    shown = runner.invoke(main, ["features", "show", busiest, "--store", store])
    assert shown.exit_code == 0, shown.output
    assert "top contexts" in shown.output and "(auto)" in shown.output
    labelled = runner.invoke(main, ["label", busiest, "subject noun", "--store", store])
    assert labelled.exit_code == 0, labelled.output
    as_json = json.loads(runner.invoke(main, ["features", "show", busiest, "--store", store, "--format", "json"]).output)
    assert (as_json["label"], as_json["label_source"]) == ("subject noun", "manual")
    bad = runner.invoke(main, ["features", "show", "not-a-feature", "--store", store])
    assert bad.exit_code == 1 and "is not a feature id" in bad.output and "Traceback" not in bad.output
    missing = runner.invoke(main, ["features", "build", "--store", store, "--corpus", str(tmp_path / "nope.txt"), "-q"])
    assert missing.exit_code == 1 and "no such corpus file" in missing.output


def _zoo_site(site: str) -> str:
    from sfc_graph import zoo

    return str(zoo.dictionary_path(site))


def test_labels_appear_in_diagrams_and_reports(tmp_path, store):
    from sfc_graph.report.compare import build_comparison_report
    from sfc_graph.report.viz import draw_circuit, graphviz_available

    bundle = build_circuit(tmp_path / "c1", "c1", task="agreement")
    store.load(bundle)
    store.load(build_circuit(tmp_path / "c2", "c2", task="ioi", seed=3))
    top = bundle.nodes.filter(pl.col("kind") == "feature").sort(pl.col("effect").abs(), descending=True).row(0, named=True)
    site = top["node_id"].split("/")[0]
    set_label(store, f"{bundle.manifest['dictionaries'][site]['id']}/{top['index']}", "subject number")
    report = build_comparison_report(store, ["c1", "c2"], tmp_path / "report")
    assert "subject number" in Path(report.html).read_text(encoding="utf-8")
    if graphviz_available():
        diagram = draw_circuit(store, "c1", tmp_path / "c1.svg")
        assert "subject number" in diagram.path.read_text(encoding="utf-8")


def test_cli_label_import_then_search(tmp_path):
    bundle = build_circuit(tmp_path / "c1", "c1")
    store = str(tmp_path / "store")
    runner = CliRunner()
    assert runner.invoke(main, ["load", str(tmp_path / "c1"), "--store", store]).exit_code == 0
    dictionary = bundle.manifest["dictionaries"]["mlp_1"]["id"]
    latent = int(bundle.nodes.filter(pl.col("node_id").str.starts_with("mlp_1/") & (pl.col("kind") == "feature"))["index"][0])
    export = tmp_path / "explanations.json"
    export.write_text(json.dumps([{"modelId": "np-model", "layer": "1-mlp", "index": str(latent),
                                   "description": "Closing brackets in code"}]))
    result = runner.invoke(main, ["label", "--import", str(export), "--map", f"np-model/1-mlp={dictionary}",
                                  "--store", store])
    assert result.exit_code == 0, result.output
    assert "imported 1 labels" in result.output
    found = runner.invoke(main, ["query", "feature-search", "-p", "text", "BRACKETS", "--store", store,
                                 "--format", "json"])
    rows = json.loads(found.output)
    assert [(r["feature"], r["label_source"], r["n_circuits"]) for r in rows] == [(f"{dictionary}/{latent}", "neuronpedia", 1)]
    both = runner.invoke(main, ["label", "x", "y", "--import", str(export), "--store", store])
    assert both.exit_code == 2


def test_cli_serve_refuses_a_store_that_is_not_there(tmp_path):
    result = CliRunner().invoke(main, ["serve", "--store", str(tmp_path / "nothing"), "--port", "8766"])
    assert result.exit_code == 1
    assert "no circuit store" in result.output and "Traceback" not in result.output


def test_draft_label_leaves_out_a_context_token_the_whole_corpus_is_full_of():
    dash = {"examples": [_ex(["the", "keys"], 1), _ex(["the", "keys"], 1), _ex(["the", "key"], 1)]}
    assert draft_label(dash) == '"keys" after "the"'
    assert draft_label(dash, common={"the"}) == '"keys"'


def test_a_labelled_token_stream_gives_each_context_the_behaviour_of_its_peak_token(tmp_path):
    from sfc_graph.ingest.dashboards import DashboardSettings, compute_dashboards, load_corpus
    from sfc_graph.ingest.dictionaries import load_dictionary_set
    from sfc_graph.ingest.model import load_model

    torch.set_num_threads(1)
    docs = [{"doc": i, "tokens": s.split(), "labels": [f"b{i}-{j}" for j in range(len(s.split()))]}
            for i, s in enumerate(SENTENCES)]
    path = tmp_path / "stream.jsonl"
    path.write_text("\n".join(json.dumps(d) for d in docs) + "\n")
    handle = load_model("toy-zoo", device="cpu")
    dictionaries = load_dictionary_set([f"attn_0={_zoo_site('attn_0')}"], n_layers=handle.n_layers,
                                       d_model=handle.d_model, model_id=handle.model_id)
    rows = compute_dashboards(handle, dictionaries, load_corpus(str(path), handle), settings=DashboardSettings(k=4))
    checked = 0
    for dash in rows["dashboard"]:
        for ex in json.loads(dash)["examples"]:
            source = docs[ex["doc"]]
            words = handle.model.to_str_tokens(" ".join(source["tokens"]))  # <bos> first; unknown words read <unk>
            assert ex["tokens"][ex["at"]] == words[ex["position"]]
            if len(words) - 1 == len(source["labels"]):
                assert ex["behaviour"] == source["labels"][ex["position"] - 1]
            else:  # the tokenizer split a word (years into digits): labels no longer line up, so none are shown
                assert ex["behaviour"] is None
            checked += 1
    assert checked > 50


def test_a_store_from_before_dashboards_opens_read_only_with_the_new_table(tmp_path):
    import ladybug

    spec = tmp_path / "store"
    with open_store(spec) as store:
        store.load(build_circuit(tmp_path / "c1", "c1"))
    db = ladybug.Database(str(spec / "graph.lbdb"))
    conn = ladybug.Connection(db)
    conn.execute("DROP TABLE FeatureInfo")  # as a store written before the table existed
    conn.close()
    db.close()
    with open_store(spec, read_only=True) as store:
        top = store.query("top-nodes", circuit="c1", k=3)
        assert top.height == 3 and top["label"].null_count() == 3


def test_draft_label_with_common_tokens_and_no_dominant_token():
    dash = {"examples": [_ex(["the", t], 1) for t in ["is", "is", "are", "was", "were"]]}
    assert draft_label(dash, common={"the"}) == '"is" / "are" / "was"'
    assert draft_label(dash) == '"is" / "are" / "was" after "the"'
