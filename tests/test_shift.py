"""SHIFT: the probe classifier, ablation with the SAE error kept, the judges, the table, the Intervention record
and ``sfc shift``, on a tiny random model and hand-made bios. Every figure is checked against an independent
computation written here with plain transformer_lens hooks, numpy and sklearn."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch
from click.testing import CliRunner
from shift_builders import build_dictionaries, build_model, write_bios, write_workspace
from sfc_graph.ingest.ablation import Ablation, neuron_dictionaries
from sfc_graph.ingest.compute import CircuitSettings
from sfc_graph.ingest.metrics import neg_log_prob
from sfc_graph.ingest.probe import train_probe
from sfc_graph.ingest.shift import (
    ShiftData,
    ShiftExperiment,
    ShiftSettings,
    auto_judge,
    circuit_features,
    load_bios,
    run_shift,
)
from sfc_graph.ingest.tasks import Answers
from test_ingest_helpers import one_thread  # noqa: F401 (autouse)

from sfc_graph.cli.app import main
from sfc_graph.errors import SfcError
from sfc_graph.sites import parse_site
from sfc_graph.store.ladybug import LadybugStore

sklearn_metrics = pytest.importorskip("sklearn.metrics")
sklearn_linear = pytest.importorskip("sklearn.linear_model")

FAST = CircuitSettings(method="ig", ig_steps=2, ablation="zero", metric="neg_log_prob", node_threshold=0.05,
                       edge_threshold=0.01, n_examples=12, eval_thresholds=())


@pytest.fixture(scope="module")
def bios_dir(tmp_path_factory):
    return write_bios(tmp_path_factory.mktemp("bios") / "bios")


@pytest.fixture(scope="module")
def data(bios_dir):
    return ShiftData(load_bios(str(bios_dir), "ambiguous"), load_bios(str(bios_dir), "balanced"))


@pytest.fixture(scope="module")
def experiment(data):
    handle = build_model()
    return ShiftExperiment(handle, build_dictionaries(handle), data, ShiftSettings(circuit=FAST))


# --- independent computations -------------------------------------------------------------------------------


def tokens_of(handle, text):
    return handle.model.to_tokens(text)


def pooled_by_hand(handle, texts, hooks=()):
    """Mean over positions 1.. (BOS skipped) of the last resid_post, one text at a time, with extra hooks."""
    name = f"blocks.{handle.n_layers - 1}.hook_resid_post"
    out = []
    for text in texts:
        grabbed = {}
        handle.model.run_with_hooks(tokens_of(handle, text),
                                    fwd_hooks=[*hooks, (name, lambda x, hook: grabbed.setdefault("x", x.detach()))])
        out.append(grabbed["x"][0, 1:].mean(0).double())
    return torch.stack(out)


def codes_by_hand(dictionary, x):
    return torch.relu((x - dictionary.b_dec) @ dictionary.W_enc + dictionary.b_enc)


def zero_latents_hook(dictionary, latents):
    """x -> x - sum_i f_i(x) W_dec[i]: the latents zeroed, everything else (the error included) kept."""
    latents = torch.tensor(latents)

    def hook(x, hook):
        f = codes_by_hand(dictionary, x)
        return x - f[..., latents] @ dictionary.W_dec[latents]
    return hook


def accuracy_by_hand(weight, bias, x, texts_bios, classes, aligned):
    logits = x.numpy() @ weight.double().numpy().T + bias.double().numpy()
    predicted = np.array(classes)[logits.argmax(1)]
    profession = np.array([b.profession for b in texts_bios])
    gender = np.array([aligned[b.gender] for b in texts_bios])
    groups = {}
    for p, g, ok in zip(profession, [b.gender for b in texts_bios], predicted == profession):
        groups.setdefault((p, g), []).append(ok)
    return (sklearn_metrics.accuracy_score(profession, predicted), sklearn_metrics.accuracy_score(gender, predicted),
            min(np.mean(v) for v in groups.values()))


# --- the classifier ------------------------------------------------------------------------------------------


def test_attached_probe_is_the_models_output_and_the_metric_is_neg_log_c(experiment, data):
    handle = experiment.handle
    bios = data.split("balanced", "test")[:5]
    x = pooled_by_hand(handle, [b.text for b in bios])
    probe = experiment.probe
    expected = x @ probe.weight.double().T + probe.bias.double()
    for row, bio in enumerate(bios):
        out = experiment.classifier.model(tokens_of(handle, bio.text))
        assert out.shape[-1] == len(data.classes)
        assert torch.allclose(out[0, -1].double(), expected[row], atol=1e-4)
        label = data.classes.index(bio.profession)
        metric = neg_log_prob(out, Answers(clean=torch.tensor([label]), patch=None))
        assert float(metric) == pytest.approx(float(-torch.log_softmax(expected[row], -1)[label]), abs=1e-4)
    # the model it was attached to is unchanged: still a language model
    assert handle.model(tokens_of(handle, bios[0].text)).shape[-1] == handle.model.cfg.d_vocab


def test_pooled_activations_and_accuracies_match_an_independent_computation(experiment, data):
    encoded = experiment.sets["balanced_test"]
    x = experiment.pooled("balanced_test")
    assert torch.allclose(x, pooled_by_hand(experiment.handle, [b.text for b in encoded.bios]), atol=1e-5)
    probe = experiment.probe
    got = experiment.measure(probe)
    profession, gender, worst = accuracy_by_hand(probe.weight, probe.bias, x, encoded.bios, data.classes, data.aligned)
    assert got.profession == pytest.approx(profession, abs=1e-12)
    assert got.gender == pytest.approx(gender, abs=1e-12)
    assert got.worst_group == pytest.approx(worst, abs=1e-12)
    assert 0 < got.profession < 1  # not vacuous


def test_probe_training_agrees_with_sklearn_logistic_regression(experiment):
    x_train = experiment.pooled("ambiguous_train")
    y_train = experiment.sets["ambiguous_train"].profession
    x_test = experiment.pooled("balanced_test")
    y_test = experiment.sets["balanced_test"].profession
    l2 = 1e-2
    ours = train_probe(x_train, y_train, n_classes=2, l2=l2)
    mean, std = x_train.mean(0), x_train.std(0).clamp_min(1e-6)
    # the same objective: mean cross-entropy + l2/2 ||W||^2 with two softmax rows = binomial with C = 2 / (l2 n)
    reference = sklearn_linear.LogisticRegression(C=2.0 / (l2 * len(y_train)), max_iter=5000, tol=1e-10)
    reference.fit(((x_train - mean) / std).numpy(), y_train.numpy())
    theirs = reference.predict(((x_test - mean) / std).numpy())
    mine = ours.predict(x_test).numpy()
    assert (mine == theirs).mean() >= 0.95
    assert abs(sklearn_metrics.accuracy_score(y_test, mine) - sklearn_metrics.accuracy_score(y_test, theirs)) <= 0.03


# --- ablation ------------------------------------------------------------------------------------------------


def test_ablation_with_nothing_ablated_leaves_the_model_unchanged(experiment, data):
    handle, dictionaries = experiment.handle, experiment.dictionaries
    nothing = Ablation(dictionaries, {s: torch.zeros(0, dtype=torch.long) for s in dictionaries.sites})
    tokens = tokens_of(handle, data.split("balanced", "test")[0].text)
    plain = handle.model(tokens)
    spliced = nothing.forward(handle, tokens)
    assert torch.allclose(plain, spliced, atol=1e-5)


def test_ablation_zeroes_the_latents_and_keeps_the_error(experiment, data):
    handle, dictionaries = experiment.handle, experiment.dictionaries
    chosen = {parse_site("resid_0"): [3, 7], parse_site("attn_1"): [5]}
    ablation = Ablation(dictionaries, {s: torch.tensor(v) for s, v in chosen.items()})
    hooks = [(s.hook, zero_latents_hook(dictionaries[s], v)) for s, v in chosen.items()]
    for bio in data.split("balanced", "test")[:4]:
        tokens = tokens_of(handle, bio.text)
        expected = handle.model.run_with_hooks(tokens, fwd_hooks=hooks)
        assert torch.allclose(ablation.forward(handle, tokens), expected, atol=1e-4)
        assert not torch.allclose(expected, handle.model(tokens), atol=1e-4)  # the ablation does something


def test_neuron_ablation_sets_the_neurons_to_their_fill(experiment, data):
    handle = experiment.handle
    site = parse_site("mlp_0")
    neurons = neuron_dictionaries(handle, [site])
    fill = torch.linspace(-1, 1, handle.d_model)
    ablation = Ablation(neurons, {site: torch.tensor([2, 9])}, fill={site: fill})

    def hook(x, hook):
        x = x.clone()
        x[..., [2, 9]] = fill[[2, 9]]
        return x
    tokens = tokens_of(handle, data.split("balanced", "test")[1].text)
    expected = handle.model.run_with_hooks(tokens, fwd_hooks=[(site.hook, hook)])
    assert torch.allclose(ablation.forward(handle, tokens), expected, atol=1e-5)


# --- judges --------------------------------------------------------------------------------------------------


def test_auto_judge_applies_its_rule_as_sklearn_measures_it(experiment, data):
    circuit = experiment.circuit()
    features = circuit_features(circuit.nodes, experiment.dictionaries)[:12]
    assert features, "the circuit should have features"
    labelled = experiment.sets["balanced_train"]
    judgements = auto_judge(experiment.reader, experiment.dictionaries, labelled, features, min_separation=0.2)
    gender = np.array([b.gender == "female" for b in labelled.bios])
    profession = labelled.profession.numpy()
    for (ref, _), judgement in zip(features, judgements):
        dictionary = experiment.dictionaries[ref.site]
        values = []
        for bio in labelled.bios:
            _, cache = experiment.handle.model.run_with_cache(tokens_of(experiment.handle, bio.text))
            values.append(float(codes_by_hand(dictionary, cache[ref.site.hook][0, 1:])[:, ref.latent].mean()))
        sep_g = abs(2 * sklearn_metrics.roc_auc_score(gender, values) - 1) if len(set(values)) > 1 else 0.0
        sep_p = abs(2 * sklearn_metrics.roc_auc_score(profession, values) - 1) if len(set(values)) > 1 else 0.0
        assert judgement.gender_separation == pytest.approx(sep_g, abs=1e-6)
        assert judgement.profession_separation == pytest.approx(sep_p, abs=1e-6)
        assert judgement.spurious == (sep_g > sep_p and sep_g >= 0.2)


# --- the query-driven path and the store ----------------------------------------------------------------------


RESID_FEATURES = ("MATCH (c:Circuit {id: $circuit})-[:CONTAINS]->(f:Feature) WHERE f.site = 'resid' "
                  "RETURN f.id AS feature")


def _measured_by_hooks(experiment, feature_ids):
    """SHIFT's row recomputed with hand-written hooks zeroing exactly ``feature_ids``."""
    by_id = {info.id: name for name, info in experiment.dictionaries.infos().items()}
    chosen = {}
    for fid in feature_ids:
        dictionary_id, _, latent = fid.rpartition("/")
        chosen.setdefault(parse_site(by_id[dictionary_id]), []).append(int(latent))
    hooks = [(s.hook, zero_latents_hook(experiment.dictionaries[s], v)) for s, v in chosen.items()]
    bios = experiment.sets["balanced_test"].bios
    x = pooled_by_hand(experiment.handle, [b.text for b in bios], hooks)
    probe = experiment.probe
    return accuracy_by_hand(probe.weight, probe.bias, x, bios, experiment.data.classes, experiment.data.aligned)


def test_features_chosen_by_cypher_are_exactly_the_ablated_ones(experiment, tmp_path):
    with LadybugStore(tmp_path / "store") as store:
        result = run_shift(experiment, store=store, out=tmp_path / "run", features=RESID_FEATURES,
                           retrain=False, skylines=False)
        # expected: the circuit's resid features, read from the bundle with polars (not through the store)
        nodes = pl.read_parquet(tmp_path / "run" / "circuit" / "nodes.parquet")
        manifest_dicts = __import__("json").loads((tmp_path / "run" / "circuit" / "manifest.json").read_text())[
            "dictionaries"]
        resid = nodes.filter((pl.col("kind") == "feature") & (pl.col("site") == "resid"))
        expected = {f"{manifest_dicts[n.split('/')[0]]['id']}/{i}" for n, i in zip(resid["node_id"], resid["index"])}
        assert expected
        assert {r.feature_id for r in result.ablated} == expected
        stored = store.query("shift-ablations", circuit=result.circuit_id)
        assert set(stored["feature"].to_list()) == expected
        assert set(stored["judgement"].to_list()) == {"spurious"}
        assert set(stored["judge"].to_list()) == {"query"}
        common = store.query("shift-common-ablations")
        assert set(common["feature"].to_list()) == expected
        shift_row = result.row("SHIFT").accuracies
        profession, gender, worst = _measured_by_hooks(experiment, expected)
        assert shift_row.profession == pytest.approx(profession, abs=1e-9)
        assert shift_row.gender == pytest.approx(gender, abs=1e-9)
        assert shift_row.worst_group == pytest.approx(worst, abs=1e-9)
        intervention = store.run("MATCH (i:Intervention)-[:INTERVENES_ON]->(c:Circuit) RETURN i.id AS id, "
                                 "c.id AS circuit, i.worst_group_after AS after")
        assert intervention["circuit"].to_list() == [result.circuit_id]
        assert intervention["after"][0] == pytest.approx(worst)


def test_named_query_and_file_judges(experiment, tmp_path):
    with LadybugStore(tmp_path / "store") as store:
        first = run_shift(experiment, store=store, out=tmp_path / "a", features="top-nodes",
                          query_params={"k": 4, "kind": "feature"}, retrain=False, skylines=False)
        top = store.query("top-nodes", circuit=first.circuit_id, k=4, kind="feature")
        assert {r.feature_id for r in first.ablated} == set(top["feature"].to_list())
        listed = sorted(top["feature"].to_list())[:2]
        (tmp_path / "judged.txt").write_text("# judged by hand\n" + "\n".join(listed) + "\n")
        second = run_shift(experiment, store=store, out=tmp_path / "b", features=str(tmp_path / "judged.txt"),
                           retrain=False, skylines=False, overwrite=True)
        assert sorted(r.feature_id for r in second.ablated) == listed
        # two runs in the store; the features both ablated are the listed ones
        common = store.query("shift-common-ablations")
        assert set(common["feature"].to_list()) == set(listed)
        assert set(common["of_runs"].to_list()) == {2}


def test_table_has_the_papers_rows_and_the_skylines_use_k_nodes(experiment):
    some = circuit_features(experiment.circuit().nodes, experiment.dictionaries)[:3]
    ablation = Ablation(experiment.dictionaries, {})
    for ref, _ in some:
        ablation.indices.setdefault(ref.site, torch.zeros(0, dtype=torch.long))
        ablation.indices[ref.site] = torch.cat([ablation.indices[ref.site], torch.tensor([ref.latent])])
    from sfc_graph.ingest.shift import shift_table

    rows = shift_table(experiment, ablation)
    assert [r.method for r in rows] == ["original", "SHIFT", "SHIFT + retrain", "neuron skyline", "feature skyline",
                                        "oracle"]
    assert rows[1].n_ablated == 3
    assert 0 < rows[3].n_ablated <= 3 and 0 < rows[4].n_ablated <= 3
    # the oracle is a probe trained on balanced bios, measured independently
    oracle = train_probe(experiment.pooled("balanced_train"), experiment.sets["balanced_train"].profession,
                         n_classes=2, l2=experiment.settings.probe_l2)
    bios = experiment.sets["balanced_test"].bios
    expected = accuracy_by_hand(oracle.weight, oracle.bias, experiment.pooled("balanced_test"), bios,
                                experiment.data.classes, experiment.data.aligned)
    assert rows[-1].accuracies.profession == pytest.approx(expected[0])


# --- bad input and the command --------------------------------------------------------------------------------


def test_bios_without_a_perfect_spurious_cue_are_refused(bios_dir, data):
    mixed = list(data.ambiguous)
    from sfc_graph.ingest.shift import Bio

    mixed.append(Bio("he teaches students", "nurse", "male", "train"))
    with pytest.raises(SfcError, match="exactly one profession"):
        ShiftData(mixed, data.balanced)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return write_workspace(tmp_path_factory.mktemp("shift-ws"))


def test_sfc_shift_prints_the_table_and_stores_the_intervention(workspace, tmp_path):
    args = ["shift", "--model", str(workspace / "model"), "--dict", str(workspace / "dicts"), "--bios",
            str(workspace / "bios"), "--store", str(tmp_path / "st"), "--out", str(tmp_path / "run"),
            "--n-examples", "8", "--ig-steps", "2", "--node-threshold", "0.05", "--no-skylines", "--device", "cpu",
            "--threads", "1", "-q", "--features-from", RESID_FEATURES]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    for method in ("original", "SHIFT", "SHIFT + retrain", "oracle"):
        assert method in result.output
    assert (tmp_path / "run" / "report.md").is_file() and (tmp_path / "run" / "shift.json").is_file()
    listed = CliRunner().invoke(main, ["query", "shift-ablations", "--store", str(tmp_path / "st"), "--format", "json"])
    assert listed.exit_code == 0 and '"judgement": "spurious"' in listed.output


def test_sfc_shift_refuses_missing_bios_in_one_sentence(workspace, tmp_path):
    args = ["shift", "--model", str(workspace / "model"), "--dict", str(workspace / "dicts"), "--bios",
            str(tmp_path / "nowhere"), "--store", str(tmp_path / "st"), "--out", str(tmp_path / "run"), "-q"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "not 'toy-zoo' nor a directory" in result.output
    assert not (tmp_path / "st").exists()


def test_mean_fill_sets_features_to_their_mean_over_the_training_tokens(experiment):
    from dataclasses import replace

    site = parse_site("resid_1")
    dictionary = experiment.dictionaries[site]
    original = experiment.settings
    experiment.settings = replace(original, fill="mean")
    try:
        filled = experiment.filled(Ablation(experiment.dictionaries, {site: torch.tensor([2, 11])}))
    finally:
        experiment.settings = original
    values = []
    for bio in experiment.sets["ambiguous_train"].bios:
        _, cache = experiment.handle.model.run_with_cache(tokens_of(experiment.handle, bio.text))
        values.append(codes_by_hand(dictionary, cache[site.hook][0, 1:])[:, [2, 11]])
    expected = torch.cat(values).mean(0)
    assert torch.allclose(filled.fill[site][[2, 11]], expected, atol=1e-5)
    assert filled.fill[site].count_nonzero() <= 2


def test_bad_feature_choices_are_refused_in_one_sentence(experiment, tmp_path):
    from sfc_graph.ingest.shift import features_from

    dictionaries = experiment.dictionaries
    (tmp_path / "bad.txt").write_text("nowhere/sae/3\n")
    with pytest.raises(SfcError, match="is not one of this run's"):
        features_from(str(tmp_path / "bad.txt"), store=None, dictionaries=dictionaries, circuit_id="c")
    (tmp_path / "range.txt").write_text("resid_0/999\n")
    with pytest.raises(SfcError, match="out of range"):
        features_from(str(tmp_path / "range.txt"), store=None, dictionaries=dictionaries, circuit_id="c")
    with LadybugStore(tmp_path / "store") as store:
        with pytest.raises(SfcError, match="must return a 'feature' column"):
            features_from("MATCH (f:Feature) RETURN f.id AS fid", store=store, dictionaries=dictionaries,
                          circuit_id="c")
        with pytest.raises(SfcError, match="not a file, a named query, nor Cypher"):
            features_from("no-such-query", store=store, dictionaries=dictionaries, circuit_id="c")
