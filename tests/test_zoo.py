"""The toy zoo: tokenizer, grammar and task files, the shipped model and dictionaries against their bars,
and a miniature end-to-end build.

Figures are recomputed here independently of ``sfc_graph.zoo.card`` (own forward passes, the SAELens
formulas written out), on samples small enough for the fast suite; ``-m slow`` runs the full card check.
"""

from __future__ import annotations

import json
import random
import re

import pytest
from sfc_graph.zoo.grammar import (
    BEHAVIOURS,
    CLAUSE_VERBS,
    MAIN_VERBS,
    NAMES,
    PROFESSIONS,
    TASKS,
    Grammar,
    unit_text,
    vocabulary,
)

from sfc_graph import zoo
from sfc_graph.errors import ZooError

torch = pytest.importorskip("torch")

N_LAYERS = 4  # the shipped model's depth
LOGIT_DIFF_TASKS = ("agreement_simple", "agreement_nounpp", "agreement_rc", "agreement_within_rc", "ioi")


@pytest.fixture(scope="module")
def tokenizer():
    return zoo.load_tokenizer()


@pytest.fixture(scope="module")
def model():
    return zoo.load_model()


@pytest.fixture(scope="module")
def task_pairs():
    return {
        (task, split): [json.loads(line) for line in zoo.task_path(task, split).read_text().splitlines()]
        for task in zoo.task_names()
        for split in ("test", "train")
    }


# --- tokenizer -------------------------------------------------------------------------------------------

def test_tokenizer_round_trip(tokenizer):
    rng = random.Random(7)
    grammar = Grammar()
    for _ in range(300):
        text = grammar.sentence(rng)
        ids = tokenizer(text)["input_ids"]
        assert ids[0] == tokenizer.bos_token_id
        assert tokenizer.unk_token_id not in ids
        decoded = tokenizer.decode(ids, skip_special_tokens=True)
        # years come back as century and two digits ("17 32"); everything else verbatim
        assert decoded == re.sub(r"\b(\d\d)(\d\d)\b", r"\1 \2", text)
        assert tokenizer(decoded)["input_ids"] == ids


def test_tokenizer_splits_years_and_lowercases(tokenizer):
    tokens = tokenizer.convert_ids_to_tokens(tokenizer("From the year 1732 to the year 17")["input_ids"])
    assert tokens == ["<bos>", "from", "the", "year", "17", "32", "to", "the", "year", "17"]
    assert tokenizer.convert_ids_to_tokens(tokenizer("Mary, john.")["input_ids"]) == ["<bos>", "mary", ",", "john", "."]
    assert tokenizer("zebra")["input_ids"][1] == tokenizer.unk_token_id


def test_vocabulary_matches_shipped_tokenizer(tokenizer):
    vocab = tokenizer.get_vocab()
    assert set(vocabulary()) <= set(vocab)
    assert len(vocab) == len(set(vocabulary())) + 4  # the four special tokens


# --- task files ------------------------------------------------------------------------------------------

def test_every_task_has_enough_pairs(task_pairs):
    assert set(zoo.task_names()) == set(TASKS)
    for task in TASKS:
        test, train = task_pairs[(task, "test")], task_pairs[(task, "train")]
        assert len(test) >= 200, task
        assert len(train) >= 100, task
        keys = {"clean", "patch", "clean_answer", "patch_answer", "template"}
        assert all(set(p) == keys for p in test + train), task
        assert len({json.dumps(p, sort_keys=True) for p in test}) == len(test), f"{task}: duplicate pairs"
        prompt = (lambda p: (p["clean"], p["clean_answer"])) if task == "agreement_simple" else (lambda p: p["clean"])
        assert not {prompt(p) for p in test} & {prompt(p) for p in train}, f"{task}: test prompt in train"


def test_task_pairs_tokenize_in_vocabulary_and_align(tokenizer, task_pairs):
    for (task, split), pairs in task_pairs.items():
        for p in pairs:
            clean = tokenizer(p["clean"])["input_ids"]
            patch = tokenizer(p["patch"])["input_ids"]
            assert tokenizer.unk_token_id not in clean + patch, (task, p)
            assert len(clean) == len(patch), (task, p)
            # the counterfactual changes exactly one word: the subject's number, the repeated name, the start year
            assert sum(a != b for a, b in zip(clean, patch)) == 1, (task, p)
            for answer in (p["clean_answer"], p["patch_answer"]):
                ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
                assert len(ids) == 1 and ids[0] != tokenizer.unk_token_id, (task, answer)
            assert p["clean_answer"] != p["patch_answer"]


def test_pairs_of_one_template_align_slot_by_slot(tokenizer, task_pairs):
    """Within a template every prompt has the same length and the same function words at the same positions
    (the slots line up, so per-position means are meaningful)."""
    function_words = {"the", "that", "to", ",", ".", "again", "and", "year", "from", "a", "went", "when", "is"}
    for task in TASKS:
        by_template: dict[str, list[list[str]]] = {}
        for p in task_pairs[(task, "test")] + task_pairs[(task, "train")]:
            by_template.setdefault(p["template"], []).append(tokenizer.tokenize(p["clean"]))
        assert len(by_template) >= (1 if task == "greater_than" else 2), task
        for template, prompts in by_template.items():
            assert len({len(t) for t in prompts}) == 1, (task, template)
            for i, word in enumerate(prompts[0]):
                if word in function_words:
                    assert all(t[i] == word for t in prompts), (task, template, i)


def test_copy_pairs_repeat_the_context(task_pairs):
    for p in task_pairs[("copy", "test")]:
        head, repeat = p["clean"].split(" , again ")
        items = head.split()[-len(repeat.split()) - 1:]
        assert items[:-1] == repeat.split() and items[-1] == p["clean_answer"]
        assert p["patch"].split(" , again ")[0].split()[-1] == p["patch_answer"] != p["clean_answer"]


def test_greater_than_answers_straddle_the_start_year(task_pairs):
    for p in task_pairs[("greater_than", "test")]:
        start = int(p["clean"].split()[-5][2:])
        assert p["patch"].split()[-5].endswith("01")
        assert int(p["clean_answer"]) > start > int(p["patch_answer"]) > 1


def test_ioi_answer_is_the_name_mentioned_once(task_pairs):
    for p in task_pairs[("ioi", "test")]:
        words = p["clean"].split()
        assert words.count(p["clean_answer"]) == 1 and words.count(p["patch_answer"]) == 2
        assert p["patch"].split().count(p["patch_answer"]) == 1


def test_training_corpus_never_starts_with_a_held_out_prompt(task_pairs):
    """No training unit starts with a held-out prompt (followed by its answer, for agreement_simple: a
    held-out simple key is a subject with one verb, and the subject meets other verbs in training)."""
    held_out = {p[side] for task in TASKS if task != "agreement_simple" for p in task_pairs[(task, "test")]
                for side in ("clean", "patch")
                if task != "greater_than" or side == "clean"}  # the year-01 prompt is shared by many pairs
    held_out |= {f"{p[side]} {v}" for p in task_pairs[("agreement_simple", "test")] for side in ("clean", "patch")
                 for v in (p["clean_answer"], p["patch_answer"])}
    rng = random.Random(0)
    grammar = Grammar(noise=0.06)
    for _ in range(20_000):
        words = unit_text(grammar.unit(rng)).split()
        prefixes = {" ".join(words[:k]) for k in range(1, len(words))}
        assert not prefixes & held_out


# --- bios and the labelled stream ---------------------------------------------------------------------

def _counts(rows, *fields):
    from collections import Counter

    return Counter(tuple(r[f] for f in fields) for r in rows)


def test_bios_files_follow_the_contract():
    for name in zoo.BIOS:
        rows = zoo.load_bios(name)
        assert rows and all(set(r) == {"text", "profession", "gender", "split"} for r in rows)
        assert {r["split"] for r in rows} == {"train", "test"}
        for r in rows:
            words = r["text"].split()
            pronouns = {"she", "her"} if r["gender"] == "female" else {"he", "his"}
            other = {"he", "his"} if r["gender"] == "female" else {"she", "her"}
            assert pronouns & set(words) and not other & set(words), r
            assert r["profession"] not in words  # cued by workplace and activities, never named
    ambiguous = _counts(zoo.load_bios("ambiguous"), "profession", "gender")
    assert set(ambiguous) == {("professor", "male"), ("nurse", "female")}
    balanced = _counts(zoo.load_bios("balanced"), "profession", "gender")
    assert set(balanced) == {(p, g) for p in ("professor", "nurse") for g in ("female", "male")}
    assert max(balanced.values()) - min(balanced.values()) <= 1
    five = _counts(zoo.load_bios("professions"), "profession", "gender")
    assert {p for p, _ in five} == set(PROFESSIONS) and len(five) == 10
    with pytest.raises(ZooError, match="no bios"):
        zoo.load_bios("sports")


def test_stream_labels_name_the_deciding_mechanism(tokenizer):
    docs = zoo.load_stream()
    assert len(docs) >= 500
    seen = set()
    for d in docs:
        tokens, labels = d["tokens"], d["labels"]
        assert len(tokens) == len(labels) and set(labels) <= set(BEHAVIOURS)
        ids = tokenizer(" ".join(tokens))["input_ids"]
        assert tokenizer.convert_ids_to_tokens(ids)[1:] == tokens  # tokenizer words, <bos> prepended
        for i, (token, label) in enumerate(zip(tokens, labels)):
            seen.add(label)
            if label == "ioi":  # the name mentioned once in its sentence, after "to"
                assert tokens[i - 1] == "to" and token in NAMES and tokens[:i].count(token) >= 1
            elif label == "copy":  # repeats a token of the pattern given earlier
                assert token in tokens[:i] and "again" in tokens[:i]
            elif label == "greater_than":  # the end year's two digits, after its century
                assert token.isdigit() and tokens[i - 2] == "year"
            elif label == "agreement":
                assert any(token in pair for pair in MAIN_VERBS + CLAUSE_VERBS)
    assert seen == set(BEHAVIOURS)


def test_model_reads_bios(model):
    """The bios are in the training mixture: the model predicts their words far better than the same words
    shuffled (an independent baseline: same tokens, no syntax)."""
    texts = [r["text"] for r in zoo.load_bios("professions")[:100]]
    rng = random.Random(0)
    shuffled = [" ".join(rng.sample(t.split(), len(t.split()))) for t in texts]

    def ce(batch):
        tokens = model.to_tokens(batch, padding_side="right")
        mask = tokens != model.tokenizer.pad_token_id
        with torch.no_grad():
            logits = model(tokens)
        return _ce(logits, tokens, mask)

    assert ce(texts) < 0.6 * ce(shuffled)


# --- API -------------------------------------------------------------------------------------------------

def test_api_paths_and_errors():
    assert zoo.zoo_dir().is_dir()
    assert zoo.site_names()[:4] == ["embed", "attn_0", "mlp_0", "resid_0"]
    for site in zoo.site_names():
        assert (zoo.dictionary_path(site) / "sae_weights.safetensors").is_file()
    assert (zoo.transcoder_path(0) / "cfg.json").is_file()
    with pytest.raises(ZooError, match="no dictionary"):
        zoo.dictionary_path("resid_99")
    with pytest.raises(ZooError, match="no dictionary"):
        zoo.dictionary_path("bogus")
    with pytest.raises(ZooError, match="no transcoder"):
        zoo.transcoder_path(99)
    with pytest.raises(ZooError, match="no task"):
        zoo.task_path("sentiment")
    with pytest.raises(ZooError, match="split"):
        zoo.task_path("ioi", "dev")
    assert zoo.load_card()["name"] == zoo.ZOO_NAME


def test_importing_the_zoo_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, sfc_graph.zoo; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- the shipped model -----------------------------------------------------------------------------------

def _logit_diff(model, pair: dict) -> float:
    tokens = model.to_tokens(pair["clean"])
    with torch.no_grad():
        logits = model(tokens)[0, -1]
    vocab = model.tokenizer.get_vocab()
    return float(logits[vocab[pair["clean_answer"]]] - logits[vocab[pair["patch_answer"]]])


def test_model_loads_as_hooked_transformer(model):
    from transformer_lens import HookedTransformer

    assert isinstance(model, HookedTransformer)
    assert not model.training
    assert model.cfg.n_layers == N_LAYERS and not model.cfg.parallel_attn_mlp
    tokens = model.to_tokens("the parents")
    assert tokens[0, 0].item() == model.tokenizer.bos_token_id and tokens.shape == (1, 3)


@pytest.mark.parametrize("task", TASKS)
def test_model_meets_accuracy_bar_on_sample(model, task_pairs, task):
    pairs = random.Random(task).sample(task_pairs[(task, "test")], 60)
    diffs = [_logit_diff(model, p) for p in pairs]
    accuracy = sum(d > 0 for d in diffs) / len(diffs)
    assert accuracy >= 0.90, f"{task}: {accuracy:.3f}"
    if task in LOGIT_DIFF_TASKS:  # learned but not saturated
        mean = sum(diffs) / len(diffs)
        assert 1.5 <= mean <= 5.0, f"{task}: mean logit diff {mean:.2f}"


def test_model_is_not_trivially_biased(model, task_pairs):
    """The patch prompt must flip the preference: the model reads the prompt, not a favourite answer.

    Not for greater_than: after the start year 01 both answers are valid years, so neither is preferred.
    """
    for task in [t for t in TASKS if t != "greater_than"]:
        pairs = task_pairs[(task, "test")][:40]
        flipped = [{"clean": p["patch"], "clean_answer": p["patch_answer"], "patch_answer": p["clean_answer"]}
                   for p in pairs]
        accuracy = sum(_logit_diff(model, p) > 0 for p in flipped) / len(flipped)
        assert accuracy >= 0.9, f"{task} counterfactual: {accuracy:.3f}"


# --- the shipped dictionaries ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def held_out_batch(model):
    rng = random.Random("test-zoo-dictionaries")  # not any stream the build uses
    grammar = Grammar()
    # small enough for the fast suite; the dead-latent bar needs the card's 50k tokens (slow verify test)
    tokens = model.to_tokens([grammar.sentence(rng) for _ in range(160)], padding_side="right")
    return tokens, tokens != model.tokenizer.pad_token_id


def _load_sae(directory):
    from safetensors.torch import load_file

    cfg = json.loads((directory / "cfg.json").read_text())
    return cfg, load_file(str(directory / "sae_weights.safetensors"))


def _ce(logits, tokens, mask):
    losses = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), tokens[:, 1:], reduction="none")
    return float((losses * mask[:, 1:]).sum() / mask[:, 1:].sum())


def _dictionary_figures(model, held_out_batch, directory):
    tokens, mask = held_out_batch
    cfg, w = _load_sae(directory)
    hook_in, hook_out = cfg["hook_name"], cfg.get("hook_name_out", cfg["hook_name"])
    assert cfg["normalize_activations"] == "none" and cfg["dtype"] == "float32"
    assert w["W_enc"].shape == (cfg["d_in"], cfg["d_sae"]) and w["W_dec"].shape == (cfg["d_sae"], cfg["d_in"])

    def encode(x):
        x = x - w["b_dec"] if cfg["apply_b_dec_to_input"] else x
        return torch.relu(x @ w["W_enc"] + w["b_enc"])

    with torch.no_grad():
        clean_logits, cache = model.run_with_cache(tokens, names_filter=lambda name: name in (hook_in, hook_out))
        x, y = cache[hook_in], cache[hook_out]
        f = encode(x)
        y_hat = f @ w["W_dec"] + w["b_dec"]
        y_m, y_hat_m, f_m = y[mask], y_hat[mask], f[mask]
        fve = 1 - ((y_m - y_hat_m) ** 2).sum() / ((y_m - y_m.mean(0)) ** 2).sum()
        l0 = (f_m > 0).float().sum(-1).mean()
        dead = ((f_m > 0).sum(0) == 0).float().mean()
        spliced = model.run_with_hooks(tokens, fwd_hooks=[(hook_out, lambda act, hook: y_hat)])
        zeroed = model.run_with_hooks(tokens, fwd_hooks=[(hook_out, lambda act, hook: torch.zeros_like(act))])
    ce_clean, ce_dict, ce_zero = (_ce(lg, tokens, mask) for lg in (clean_logits, spliced, zeroed))
    recovered = (ce_zero - ce_dict) / (ce_zero - ce_clean)
    if recovered < 0.95 and ce_zero - ce_clean < 0.05:
        # the site's ablation costs the loss almost nothing: judge the splice's own cost instead (card.BARS)
        recovered = 1.0 if ce_dict - ce_clean <= 0.005 else recovered
    return float(fve), float(l0), float(dead), recovered


@pytest.mark.parametrize("name", ["embed"] + [f"{k}_{l}" for l in range(N_LAYERS) for k in ("attn", "mlp", "resid")]
                         + [f"transcoder_{l}" for l in range(N_LAYERS)])
def test_dictionary_meets_bars_on_held_out_sample(model, held_out_batch, name):
    directory = zoo.transcoder_path(int(name[-1])) if name.startswith("transcoder") else zoo.dictionary_path(name)
    cfg, _ = _load_sae(directory)
    if name.startswith("transcoder"):
        assert cfg["architecture"] == "transcoder" and cfg["hook_name_out"] == f"blocks.{name[-1]}.hook_mlp_out"
    else:
        assert cfg["architecture"] == "standard"
    assert cfg["dictionary_id"].startswith(f"{zoo.ZOO_NAME}/")
    fve, l0, dead, recovered = _dictionary_figures(model, held_out_batch, directory)
    assert fve >= 0.95, f"{name}: FVE {fve:.3f}"
    assert 3 <= l0 <= 64, f"{name}: L0 {l0:.1f}"
    assert dead <= 0.5, f"{name}: dead {dead:.3f} on a small sample"
    assert recovered >= 0.95, f"{name}: loss recovered {recovered:.3f}"


def test_saes_splice_exactly_with_their_error(model, held_out_batch):
    """x = x_hat + (x - x_hat): running on the reconstruction plus the error reproduces the model (DESIGN §2.1)."""
    tokens, _ = held_out_batch
    tokens = tokens[:32]
    cfg, w = _load_sae(zoo.dictionary_path("resid_1"))
    with torch.no_grad():
        clean = model(tokens)

        def splice(act, hook):
            x_hat = torch.relu(act @ w["W_enc"] + w["b_enc"]) @ w["W_dec"] + w["b_dec"]
            return x_hat + (act - x_hat)

        spliced = model.run_with_hooks(tokens, fwd_hooks=[(cfg["hook_name"], splice)])
    torch.testing.assert_close(spliced, clean, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_full_card_verification_passes():
    from click.testing import CliRunner
    from sfc_graph.cli.app import main

    result = CliRunner().invoke(main, ["zoo", "verify"])
    assert result.exit_code == 0, result.output


# --- the CLI ---------------------------------------------------------------------------------------------

def test_cli_info_prints_the_card():
    from click.testing import CliRunner
    from sfc_graph.cli.app import main

    runner = CliRunner()
    result = runner.invoke(main, ["zoo", "info", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["name"] == zoo.ZOO_NAME
    result = runner.invoke(main, ["zoo", "info"])
    assert result.exit_code == 0 and "agreement_within_rc" in result.output and "transcoder" in result.output
    for args in (["zoo", "-h"], ["zoo", "build", "-h"], ["zoo", "verify", "-h"], ["zoo", "info", "-h"]):
        assert runner.invoke(main, args).exit_code == 0, args


@pytest.mark.slow  # verify recomputes every dictionary's figures on 50k tokens (minutes on 4 layers)
def test_cli_verify_fails_loudly_on_a_broken_zoo(tmp_path):
    """A zoo whose model has lost its unembedding must fail verify with exit 1 and name the failing bars."""
    import shutil

    from click.testing import CliRunner
    from safetensors.torch import load_file, save_file
    from sfc_graph.cli.app import main

    broken = tmp_path / "zoo"
    shutil.copytree(zoo.zoo_dir(), broken)
    state = load_file(str(broken / "model" / "model.safetensors"))
    state["unembed.W_U"] = torch.zeros_like(state["unembed.W_U"])
    save_file(state, str(broken / "model" / "model.safetensors"))
    result = CliRunner().invoke(main, ["zoo", "verify", "--dir", str(broken), "--sample", "20"])
    assert result.exit_code == 1
    assert "accuracy" in result.output and "quality bar" in result.output
