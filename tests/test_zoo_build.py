"""A miniature ``sfc zoo build`` end to end, and the determinism of its parts."""

from __future__ import annotations

import json
import random
from dataclasses import replace

import pytest

torch = pytest.importorskip("torch")

from sfc_graph.zoo.build import BuildConfig
from sfc_graph.zoo.grammar import TASKS, Grammar

from sfc_graph import zoo
from sfc_graph.errors import ZooError


@pytest.fixture(scope="module")
def mini_zoo(tmp_path_factory):
    from click.testing import CliRunner
    from sfc_graph.cli.app import main

    out = tmp_path_factory.mktemp("zoo") / "mini"
    result = CliRunner().invoke(main, ["zoo", "build", "--out", str(out), "--quick", "--model-steps", "200",
                                       "--threads", "1"])
    assert result.exit_code == 0, result.output
    return out


def test_mini_build_writes_the_artefact_layout(mini_zoo):
    card = json.loads((mini_zoo / "card.json").read_text())
    n_layers = card["architecture"]["n_layers"]
    assert (mini_zoo / "tokenizer.json").is_file()
    assert (mini_zoo / "model" / "config.json").is_file() and (mini_zoo / "model" / "model.safetensors").is_file()
    for site in zoo.site_names(root=mini_zoo):
        for name in ("cfg.json", "sae_weights.safetensors"):
            assert (mini_zoo / "dictionaries" / site / name).is_file()
    for layer in range(n_layers):
        assert (mini_zoo / "transcoders" / f"mlp_{layer}" / "sae_weights.safetensors").is_file()
    for task in TASKS:
        for split in ("test", "train"):
            lines = (mini_zoo / "tasks" / task / f"{split}.jsonl").read_text().splitlines()
            assert lines and all(json.loads(line)["clean_answer"] and json.loads(line)["template"] for line in lines)
    assert {t["task"] for t in card["tasks"]} == set(TASKS)
    assert card["training"]["model"]["steps"] == 200
    for name in zoo.BIOS:
        assert zoo.load_bios(name, root=mini_zoo)
    assert zoo.load_stream(root=mini_zoo)
    curves = json.loads((mini_zoo / "training_curves.json").read_text())
    assert [e["step"] for e in curves["evaluations"]] == [100, 200]
    assert set(curves["evaluations"][-1]) == {"step", *TASKS}
    assert len(curves["loss_every_50_steps"]) == 4


def test_mini_build_artefacts_load(mini_zoo):
    from safetensors.torch import load_file
    from transformer_lens import HookedTransformer

    model = zoo.load_model(root=mini_zoo)
    assert isinstance(model, HookedTransformer)
    logits = model(model.to_tokens(["the parents near the dog", "when mary and john went"], padding_side="right"))
    assert torch.isfinite(logits).all()
    # the 200 training steps taught it something: loss well under uniform over the vocabulary
    assert json.loads((mini_zoo / "card.json").read_text())["training"]["model"]["final_loss"] < 0.75 * \
        torch.log(torch.tensor(float(model.cfg.d_vocab))).item()
    for site in zoo.site_names(root=mini_zoo):
        directory = zoo.dictionary_path(site, root=mini_zoo)
        cfg = json.loads((directory / "cfg.json").read_text())
        w = load_file(str(directory / "sae_weights.safetensors"))
        _, cache = model.run_with_cache(model.to_tokens("the dog"), names_filter=cfg["hook_name"])
        f = torch.relu(cache[cfg["hook_name"]] @ w["W_enc"] + w["b_enc"])
        assert f.shape[-1] == cfg["d_sae"] and torch.isfinite(f @ w["W_dec"] + w["b_dec"]).all()


def test_mini_build_cli_info_reads_it(mini_zoo):
    from click.testing import CliRunner
    from sfc_graph.cli.app import main

    result = CliRunner().invoke(main, ["zoo", "info", "--dir", str(mini_zoo)])
    assert result.exit_code == 0 and "resid_0" in result.output


def test_build_refuses_a_non_empty_directory(tmp_path):
    from sfc_graph.zoo.build import build

    (tmp_path / "something").write_text("x")
    with pytest.raises(ZooError, match="not empty"):
        build(tmp_path, BuildConfig.quick())


def test_model_training_is_deterministic_and_leaves_global_rng_alone():
    from sfc_graph.zoo.model import new_model, train_model
    from sfc_graph.zoo.tokenizer import build_tokenizer

    tokenizer = build_tokenizer()
    cfg = replace(BuildConfig.quick().model, steps=8)
    states = []
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    for _ in range(2):
        model = new_model(cfg, tokenizer.get_vocab_size(), seed=5)
        train_model(model, tokenizer, Grammar(), cfg, seed=5)
        states.append(model.state_dict())
    assert torch.rand(1) == before  # the global RNG was not consumed or reseeded
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key
    other = new_model(cfg, tokenizer.get_vocab_size(), seed=6)
    assert not torch.equal(other.state_dict()["embed.W_E"], states[0]["embed.W_E"])


def test_dictionary_training_is_deterministic_and_learns():
    from sfc_graph.zoo.dictionaries import DictConfig, train_dictionary

    gen = torch.Generator().manual_seed(0)
    # sparse ground truth: 3 of 24 random directions in 32 dimensions per sample
    atoms = torch.randn(24, 32, generator=gen)
    codes = torch.zeros(4000, 24)
    for row in range(4000):
        idx = torch.randperm(24, generator=gen)[:3]
        codes[row, idx] = torch.rand(3, generator=gen) + 0.5
    x = codes @ atoms
    cfg = DictConfig(d_sae=64, steps=600, batch_size=256, target_l0=6.0)
    a, _ = train_dictionary(x, None, cfg, seed=1)
    b, _ = train_dictionary(x, None, cfg, seed=1)
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    fve = 1 - ((a(x) - x) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()
    assert fve > 0.85
    assert (a.encode(x) > 0).float().sum(-1).mean() < 9


def test_noise_breaks_the_planted_mechanisms_at_its_rate():
    """The corpus noise is what keeps the tasks from saturating: measure its rate on generated units."""
    from sfc_graph.zoo.grammar import MAIN_VERBS, unit_tokens

    plural = {p for _, p in MAIN_VERBS}
    for noise in (0.0, 0.1):
        grammar, rng = Grammar(noise=noise), random.Random(3)
        wrong = total = 0
        for _ in range(3000):
            tokens, labels = unit_tokens(grammar.unit(rng, "simple"))
            verb = next(t for t, lab in zip(tokens, labels) if lab == "agreement")
            subject = tokens[tokens.index(verb) - 1]
            subject_plural = subject.endswith("s") or subject in ("children", "men", "women")
            wrong += (verb in plural) != subject_plural
            total += 1
        assert abs(wrong / total - noise) < 0.02, (noise, wrong / total)


def test_task_splits_are_disjoint_and_seeded():
    grammar = Grammar()
    for task in TASKS:
        test = grammar.pairs(task, random.Random(1), 30, "test")
        train = grammar.pairs(task, random.Random(1), 30, "train")
        assert not {(p.clean, p.clean_answer) for p in test} & {(p.clean, p.clean_answer) for p in train}
        assert grammar.pairs(task, random.Random(1), 30, "test") == test
