"""SCR and TPP (SAEBench's definitions): the formulas on hand-made accuracies, the latent ranking and ablation
against by-hand computations, planted dictionaries whose scores are known, and ``sfc eval``."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from shift_builders import build_dictionaries, build_model, write_workspace
from sfc_graph.ingest.sae_scores import (
    SiteActivations,
    ablate_pooled,
    latent_effects,
    pooled_sites,
    scr_for_site,
    scr_score,
    top_latents,
    tpp_for_site,
    tpp_score,
)
from test_ingest_helpers import one_thread  # noqa: F401 (autouse)

from sfc_graph.cli.app import main
from sfc_graph.sites import parse_site
from sfc_graph.store.ladybug import LadybugStore


# --- formulas on hand-made accuracies ---------------------------------------------------------------------------


@pytest.mark.parametrize("a_abl, a_base, a_oracle, expected", [
    (0.75, 0.55, 0.95, 0.5),  # half-way from the biased probe to the oracle
    (0.95, 0.55, 0.95, 1.0),  # all the way
    (0.45, 0.55, 0.95, -0.25),  # worse than before
    (0.70, 0.90, 0.9005, 0.0),  # the oracle is no better than the base: SAEBench scores 0
])
def test_scr_formula(a_abl, a_base, a_oracle, expected):
    assert scr_score(a_abl, a_base, a_oracle) == pytest.approx(expected)


def test_tpp_formula_on_three_classes():
    clean = {"a": 0.90, "b": 0.80, "c": 0.70}
    ablated = {  # ablated[i][j]: probe j's accuracy with class i's latents ablated
        "a": {"a": 0.60, "b": 0.80, "c": 0.60},
        "b": {"a": 0.90, "b": 0.50, "c": 0.70},
        "c": {"a": 0.80, "b": 0.70, "c": 0.70},
    }
    # by hand: a: 0.30 - mean(0.00, 0.10) = 0.25; b: 0.30 - mean(0.00, 0.00) = 0.30; c: 0.00 - mean(0.10, 0.10) = -0.10
    score, terms = tpp_score(clean, ablated)
    assert terms == pytest.approx({"a": 0.25, "b": 0.30, "c": -0.10})
    assert score == pytest.approx((0.25 + 0.30 - 0.10) / 3)


# --- ranking and ablation ---------------------------------------------------------------------------------------


def test_latent_effects_and_top_latents_follow_saebench():
    codes = torch.tensor([[1.0, 0.0, 2.0], [3.0, 1.0, 0.0], [0.0, 2.0, 1.0], [0.0, 4.0, 1.0]])
    positive = torch.tensor([True, True, False, False])
    W_dec = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    w = torch.tensor([2.0, -1.0])
    # mean difference per latent: [2, -2.5, 0]; W_dec @ w: [2, -1, 1]
    assert latent_effects(codes, positive, w, W_dec, absolute=True).tolist() == pytest.approx([4.0, 2.5, 0.0])
    assert latent_effects(codes, positive, w, W_dec, absolute=False).tolist() == pytest.approx([4.0, 0.0, 0.0])
    assert top_latents(torch.tensor([4.0, 2.5, 0.0]), 2).tolist() == [0, 1]
    assert top_latents(torch.tensor([4.0, 2.5, 0.0]), 3).tolist() == [0, 1]  # zero effects are never ablated


def test_pooled_ablation_equals_per_token_ablation_with_the_error_kept():
    handle = build_model()
    dictionaries = build_dictionaries(handle)
    site = parse_site("mlp_1")
    texts = ["he teaches students at the university he", "she cares for many patients her"]
    pooled = pooled_sites(handle, dictionaries, texts)[site]
    latents = torch.tensor([1, 4, 7])
    dictionary = dictionaries[site]
    for row, text in enumerate(texts):
        _, cache = handle.model.run_with_cache(handle.model.to_tokens(text))
        x = cache[site.hook][0, 1:]
        f = torch.relu((x - dictionary.b_dec) @ dictionary.W_enc + dictionary.b_enc)
        error = x - (f @ dictionary.W_dec + dictionary.b_dec)
        f_ablated = f.clone()
        f_ablated[:, latents] = 0
        by_hand = (f_ablated @ dictionary.W_dec + dictionary.b_dec + error).mean(0).double()
        assert torch.allclose(pooled.x[row], x.mean(0).double(), atol=1e-5)
        assert torch.allclose(pooled.f[row], f.mean(0).double(), atol=1e-5)
        got = ablate_pooled(pooled.x[row:row + 1], pooled.f[row:row + 1], dictionary.W_dec, latents)[0]
        assert torch.allclose(got, by_hand, atol=1e-5)


# --- planted dictionaries -------------------------------------------------------------------------------------


def _planted(n: int, *, seed: int, correlated: bool):
    """Pooled activations in 5 dimensions, W_dec = I: latents 0 and 4 read gender (one per gender, so that
    zeroing both removes gender without shifting the probe's bias), latent 1 profession, 2-3 noise."""
    g = torch.Generator().manual_seed(seed)
    profession = torch.randint(0, 2, (n,), generator=g)
    gender = profession.clone() if correlated else torch.randint(0, 2, (n,), generator=g)
    f = torch.stack([3.0 * gender, 1.0 * profession, torch.rand(n, generator=g), torch.rand(n, generator=g),
                     3.0 * (1 - gender)], -1)
    f = f.double() + 0.05 * torch.rand(n, 5, generator=g).double()
    return SiteActivations(x=f.clone(), f=f), {"profession": profession, "gender": gender}


def test_scr_of_a_dictionary_with_clean_gender_latents_is_high():
    acts, labels = {}, {}
    for name, seed, correlated in (("ambiguous_train", 0, True), ("balanced_train", 1, False),
                                   ("balanced_test", 2, False)):
        acts[name], labels[name] = _planted(400, seed=seed, correlated=correlated)
    scores, details = scr_for_site(acts, labels, torch.eye(5, dtype=torch.float64), top_n=(2, 3))
    # the biased probe leans on the louder gender latents: its profession accuracy is poor
    assert details["base"]["profession"] < 0.8 and details["oracle"]["profession"] > 0.95
    assert details["direction"] == 1
    assert sorted(details["by_n"][2]["dir1"]["latents"]) == [0, 4]  # the gender latents rank first for gender
    assert scores[2] > 0.8
    # direction 2 (ablate profession, read gender) is recorded too, and removing the profession latent does
    # not bring the biased probe any closer to a gender oracle's accuracy from below
    assert details["by_n"][2]["dir2"]["latents"][0] == 1


def test_tpp_of_a_disentangled_dictionary_is_high_and_of_a_shared_one_low():
    classes = ("a", "b", "c")

    def dataset(shared: bool, seed: int):
        acts, labels = {}, {}
        g = torch.Generator().manual_seed(seed)
        for k, c in enumerate(classes):
            acts[c], labels[c] = {}, {}
            for split in ("train", "test"):
                y = torch.randint(0, 2, (300,), generator=g)
                f = 0.1 * torch.rand(300, 3, generator=g).double()
                # disentangled: class k lives on latent k; shared: every class lives on latent 0
                f[:, 0 if shared else k] += 2.0 * y.double()
                acts[c][split] = SiteActivations(x=f.clone(), f=f)
                labels[c][split] = y
        return acts, labels

    clean_scores, _ = tpp_for_site(*dataset(False, 0), torch.eye(3, dtype=torch.float64), top_n=(1,))
    shared_scores, _ = tpp_for_site(*dataset(True, 0), torch.eye(3, dtype=torch.float64), top_n=(1,))
    assert clean_scores[1] > 0.4  # ablating class i's latent costs probe i ~50 points and no other
    assert shared_scores[1] < 0.1  # one latent for every class: ablating it hurts them all alike


# --- the command ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return write_workspace(tmp_path_factory.mktemp("eval-ws"))


@pytest.mark.parametrize("metric", ["scr", "tpp"])
def test_sfc_eval_scores_every_dictionary_and_stores_them(workspace, tmp_path, metric):
    store = tmp_path / "st"
    args = ["eval", metric, "--model", str(workspace / "model"), "--dict", str(workspace / "dicts"), "--bios",
            str(workspace / "bios"), "--store", str(store), "--out", str(tmp_path / "out"), "--top-n", "2,5",
            "--device", "cpu", "--threads", "1"]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "out" / "scores.json").read_text())
    assert len(saved) == 7  # every site of the 2-layer model
    assert (tmp_path / "out" / f"{metric}.png").stat().st_size > 1000
    with LadybugStore(store, read_only=True, create=False) as opened:
        stored = opened.query("dictionary-scores", metric=metric)
    assert stored.height == 7 * 2
    by_key = {(r["dictionary"], r["top_n"]): r["value"] for r in stored.iter_rows(named=True)}
    for entry in saved:
        for n, value in entry["by_n"].items():
            assert by_key[(entry["dictionary"], int(n))] == pytest.approx(value)


def test_sfc_eval_refuses_a_bad_top_n(workspace, tmp_path):
    result = CliRunner().invoke(main, ["eval", "scr", "--model", str(workspace / "model"), "--dict",
                                       str(workspace / "dicts"), "--bios", str(workspace / "bios"), "--no-store",
                                       "--top-n", "two"])
    assert result.exit_code == 1 and "--top-n" in result.output and "Traceback" not in result.output
