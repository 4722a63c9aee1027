"""Head circuits: code statistics on hand-made codes, ROC AUC against sklearn, head patching against hooks
written here independently (on hook_result rather than hook_z), and a hand-built model with one planted copy
head that every method must rank first."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from sfc_graph.ingest.heads import codes as cs
from sfc_graph.ingest.heads.compute import HeadSettings, head_scores, head_tables
from sfc_graph.ingest.heads.evaluation import GroundTruthSettings, ground_truth, roc_auc
from sfc_graph.ingest.heads.patching import (
    attributed_head_effects,
    exact_head_effects,
    mean_head_outputs,
    position_means,
)
from sfc_graph.ingest.metrics import logit_diff
from sfc_graph.ingest.model import wrap
from sfc_graph.ingest.tasks import Example, Task, tokenize_task
from test_ingest_helpers import AGREEMENT, build_model, one_thread  # noqa: F401 (autouse)

# ------------------------------------------------------------------------------------ code statistics

# 4 positives then 3 negatives, 3 heads. Head 0: codes {1,2,3} on positives, {3,4} on negatives -> 2 only on
# positives, union 4. Head 1: the same code 7 everywhere -> 0. Head 2: {5,6} vs {9} -> 2, union 3.
CODES = np.array([
    [1, 7, 5],
    [2, 7, 5],
    [3, 7, 6],
    [1, 7, 6],
    [3, 7, 9],
    [4, 7, 9],
    [4, 7, 9],
])
POSITIVE = np.array([True] * 4 + [False] * 3)


def test_node_code_statistics_on_hand_made_codes():
    stats = cs.node_code_stats(CODES, POSITIVE)
    assert stats.n_positive_codes.tolist() == [3, 1, 2]
    assert stats.n_negative_codes.tolist() == [2, 1, 1]
    assert stats.n_positive_only.tolist() == [2, 0, 2]
    assert stats.n_negative_only.tolist() == [1, 0, 1]
    assert stats.n_union.tolist() == [4, 1, 3]
    assert stats.raw_score(normalise=True).tolist() == pytest.approx([0.5, 0.0, 2 / 3])
    scores = cs.node_scores(CODES, POSITIVE)
    e2 = np.exp(2.0)
    assert scores.tolist() == pytest.approx([e2 / (2 * e2 + 1), 1 / (2 * e2 + 1), e2 / (2 * e2 + 1)])


def test_edge_scores_on_hand_made_codes():
    edges = cs.edge_scores(CODES, POSITIVE)
    # (h0, h2) pairs on positives: (1,5) (2,5) (3,6) (1,6); on negatives (3,9) (4,9): all 4 positive-only.
    # (h0, h1): (1,7) (2,7) (3,7) on positives, (3,7) (4,7) on negatives -> 2. (h1, h2): (7,5) (7,6) vs (7,9) -> 2.
    assert edges.tolist() == [[0, 2, 4], [2, 0, 2], [4, 2, 0]]
    normalised = cs.edge_scores(CODES, POSITIVE, normalise=True)
    assert normalised[0, 2] == pytest.approx(4 / (4 + 2))
    assert normalised[0, 1] == pytest.approx(2 / (3 + 2))
    assert cs.edge_head_scores(edges, aggregation="sum").tolist() == [12, 8, 12]
    # Published top-pairs with 3 heads: k = round(2 * 0.25 * 9) = 4 endpoints = the two best ordered pairs,
    # (0,2) and (2,0) -> heads 0 and 2 twice each.
    assert cs.edge_head_scores(edges, aggregation="top-pairs").tolist() == [2, 0, 2]


def test_edge_scores_match_a_brute_force_count():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 4, size=(12, 4))
    positive = rng.random(12) < 0.5
    edges = cs.edge_scores(codes, positive)
    for h1, h2 in itertools.permutations(range(4), 2):
        count = 0
        for c1, c2 in itertools.product(range(4), repeat=2):
            on_pos = any(codes[e, h1] == c1 and codes[e, h2] == c2 for e in range(12) if positive[e])
            on_neg = any(codes[e, h1] == c1 and codes[e, h2] == c2 for e in range(12) if not positive[e])
            count += on_pos and not on_neg
        assert edges[h1, h2] == count


# -------------------------------------------------------------------------------------------- ROC AUC


@pytest.mark.parametrize("seed", range(5))
def test_roc_auc_matches_sklearn(seed):
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    labels = rng.random(30) < 0.4
    scores = np.round(rng.normal(size=30), 1)  # rounding makes ties
    scores[labels] += 0.5
    assert roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))
    assert np.isnan(roc_auc(np.ones(4, dtype=bool), np.arange(4.0)))


# ----------------------------------------------------------------------- patching vs independent hooks


def _agreement_batches(handle, *, templates: int = 1):
    """The agreement examples; with ``templates`` > 1, dealt round-robin into that many templates (so that a
    mean over all examples at a position differs from the mean within a template)."""
    task = Task("agree", tuple(Example(c, ca, p, pa, template=f"t{i % templates}" if templates > 1 else None)
                               for i, (c, p, ca, pa) in enumerate(AGREEMENT)), "memory")
    return tokenize_task(task, handle).batches(16, handle.device)


def _independent_effects(model, batches, patch):
    """Patch each head's hook_result (its output after W_O), with use_attn_result on: independent of hook_z."""
    model.cfg.use_attn_result = True
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    names = [f"blocks.{layer}.attn.hook_result" for layer in range(n_layers)]
    try:
        sums = {name: {} for name in names}
        if patch == "mean":  # per (template, position), over every example of the template that long
            for batch in batches:
                _, cache = model.run_with_cache(batch.clean, names_filter=lambda n: n in names)
                for name in names:
                    for p in range(batch.n_pos):
                        total, count = sums[name].get((batch.template, p), (0, 0))
                        sums[name][batch.template, p] = (total + cache[name][:, p].sum(0), count + batch.size)
        effects, n = torch.zeros(n_layers * n_heads, dtype=torch.float64), 0
        for batch in batches:
            if patch == "counterfactual":
                _, cache = model.run_with_cache(batch.patch, names_filter=lambda n: n in names)
                values = {name: cache[name] for name in names}
            else:
                values = {name: torch.stack([sums[name][batch.template, p][0] / sums[name][batch.template, p][1]
                                             for p in range(batch.n_pos)])
                          .expand(batch.size, -1, -1, -1) for name in names}
            clean = logit_diff(model(batch.clean), batch.answers()).double()
            for layer, head in itertools.product(range(n_layers), range(n_heads)):
                name = names[layer]

                def hook(result, hook, head=head, value=values[name]):
                    result[:, :, head] = value[:, :, head]
                    return result

                logits = model.run_with_hooks(batch.clean, fwd_hooks=[(name, hook)])
                effects[layer * n_heads + head] += (logit_diff(logits, batch.answers()).double() - clean).sum()
            n += batch.size
        return effects / n
    finally:
        model.cfg.use_attn_result = False


@pytest.mark.parametrize("patch", ["counterfactual", "mean"])
def test_exact_head_patching_matches_independent_hooks(patch):
    handle = build_model(seed=3, dtype=torch.float64)
    batches = _agreement_batches(handle, templates=2)
    assert len({b.template for b in batches}) == 2
    means = position_means(handle.model, batches) if patch == "mean" else None
    ours = exact_head_effects(handle.model, batches, logit_diff, patch=patch, means=means)
    theirs = _independent_effects(handle.model, batches, patch)
    assert theirs.abs().max() > 1e-2  # the check means something
    torch.testing.assert_close(ours.effects, theirs, rtol=1e-6, atol=1e-8)


def test_head_attribution_matches_the_gradient_of_hook_result():
    handle = build_model(seed=4, dtype=torch.float64)
    model = handle.model
    batches = _agreement_batches(handle)
    ours = attributed_head_effects(model, batches, logit_diff, patch="counterfactual")
    model.cfg.use_attn_result = True
    names = [f"blocks.{layer}.attn.hook_result" for layer in range(model.cfg.n_layers)]
    frozen = [p for p in model.parameters() if not p.requires_grad]
    for parameter in frozen:  # here the gradient reaches hook_result through the weights instead
        parameter.requires_grad_(True)
    try:
        expected, n = torch.zeros(model.cfg.n_layers * model.cfg.n_heads, dtype=torch.float64), 0
        for batch in batches:
            _, patch_cache = model.run_with_cache(batch.patch, names_filter=lambda x: x in names)
            saved = {}

            def keep(result, hook):
                result.retain_grad()
                saved[hook.name] = result

            logits = model.run_with_hooks(batch.clean, fwd_hooks=[(name, keep) for name in names])
            logit_diff(logits, batch.answers()).sum().backward()
            for layer, name in enumerate(names):
                delta = patch_cache[name] - saved[name].detach()
                heads = (saved[name].grad * delta).sum(dim=(0, 1, 3))
                expected[layer * model.cfg.n_heads : (layer + 1) * model.cfg.n_heads] += heads
            model.zero_grad(set_to_none=True)
            n += batch.size
    finally:
        model.cfg.use_attn_result = False
        for parameter in frozen:
            parameter.requires_grad_(False)
    torch.testing.assert_close(ours.effects, expected / n, rtol=1e-6, atol=1e-8)


def test_mean_head_outputs_are_position_means_of_hook_result():
    handle = build_model(seed=5)
    model = handle.model
    tokens = _agreement_batches(handle)[0].clean
    ours = mean_head_outputs(model, [tokens])
    model.cfg.use_attn_result = True
    try:
        _, cache = model.run_with_cache(tokens)
        expected = torch.cat([cache[f"blocks.{layer}.attn.hook_result"].mean(1) for layer in range(model.cfg.n_layers)],
                             dim=1)
    finally:
        model.cfg.use_attn_result = False
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------ planted copy head

POS_WORDS = [f"a{i}" for i in range(6)]
NEG_WORDS = [f"b{i}" for i in range(6)]
PLANTED = (1, 0)  # layer 1, head 0


def planted_copy_model():
    """Attention only, no LayerNorm, one-hot token and position dimensions. Head (1, 0) attends from every
    position to position 1 and copies that token into the logits; every other head attends uniformly and
    writes only position information into a dimension the unembedding ignores."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["[UNK]", "[BOS]", "[PAD]", "q", "f"] + POS_WORDS + NEG_WORDS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", bos_token="[BOS]",
                                        pad_token="[PAD]", eos_token="[BOS]", name_or_path="planted",
                                        add_bos_token=True)
    n_vocab, n_ctx = len(vocab), 8
    d_model = n_vocab + n_ctx + 1
    junk = d_model - 1
    cfg = HookedTransformerConfig(n_layers=2, n_heads=2, d_model=d_model, d_head=n_vocab, n_ctx=n_ctx,
                                  d_vocab=n_vocab, attn_only=True, normalization_type=None, act_fn="relu",
                                  default_prepend_bos=True, seed=0)
    model = HookedTransformer(cfg, tokenizer=tokenizer)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        model.embed.W_E[:, :n_vocab] = torch.eye(n_vocab)
        model.pos_embed.W_pos[:, n_vocab : n_vocab + n_ctx] = torch.eye(n_ctx)
        model.unembed.W_U[:n_vocab, :] = torch.eye(n_vocab)
        for layer in range(2):
            for head in range(2):
                attn = model.blocks[layer].attn
                if (layer, head) == PLANTED:
                    attn.W_Q[head, n_vocab : n_vocab + n_ctx, 0] = 1.0  # every query position ...
                    attn.W_K[head, n_vocab + 1, 0] = 60.0  # ... looks for position 1
                    attn.W_V[head, :n_vocab, :] = torch.eye(n_vocab)
                    attn.W_O[head, :, :n_vocab] = 5.0 * torch.eye(n_vocab)
                else:
                    attn.W_V[head, n_vocab : n_vocab + n_ctx, 0] = 1.0 + layer + head
                    attn.W_O[head, 0, junk] = 1.0
    return wrap(model, model_id="planted-copy")


def planted_task(n: int = 24) -> Task:
    examples = tuple(
        Example(f"{POS_WORDS[i % 6]} f f q", POS_WORDS[i % 6], f"{NEG_WORDS[(i * 5) % 6]} f f q", NEG_WORDS[(i * 5) % 6])
        for i in range(n)
    )
    return Task("copy", examples, "memory")


def test_the_planted_model_copies():
    handle = planted_copy_model()
    batches = tokenize_task(planted_task(), handle).batches(64, handle.device)
    diff = logit_diff(handle.model(batches[0].clean), batches[0].answers())
    assert bool((diff > 4).all())


@pytest.mark.parametrize("method, patch", [("exact", "counterfactual"), ("exact", "mean"),
                                           ("eap", "counterfactual"), ("discrete-sae", "counterfactual")])
@pytest.mark.parametrize("seed", [0, 1])
def test_every_method_ranks_the_planted_head_first(method, patch, seed):
    handle = planted_copy_model()
    settings = HeadSettings(method=method, patch=patch, seed=seed, n_examples=24, epochs=200)
    result = head_scores(handle, planted_task(), settings)
    ranking = result.ranking_scores()
    planted = PLANTED[0] * 2 + PLANTED[1]
    others = np.delete(ranking, planted)
    assert ranking[planted] > others.max(), ranking
    if method == "discrete-sae":
        edge_heads = result.ranking_scores(edges=True, settings=HeadSettings(edge_aggregation="sum"))
        assert edge_heads[planted] >= np.delete(edge_heads, planted).max()
        nodes, edges = head_tables(result, settings)
        assert nodes.filter(nodes["effect"] == nodes["effect"].max())["node_id"].to_list() == ["attn_1/h0"]


def test_the_ground_truth_of_the_planted_model_is_the_planted_head():
    handle = planted_copy_model()
    truth = ground_truth(handle, planted_task(), GroundTruthSettings(n_examples=24))
    assert truth.in_circuit.tolist() == [False, False, True, False]
    assert roc_auc(truth.in_circuit, np.abs(truth.effects)) == 1.0


def test_discrete_sae_scores_are_determined_by_the_seed():
    handle = planted_copy_model()
    run = lambda seed: head_scores(handle, planted_task(), HeadSettings(seed=seed, n_examples=24, epochs=50))  # noqa: E731
    first, again, other = run(5), run(5), run(6)
    assert np.array_equal(first.scores, again.scores) and np.array_equal(first.edges, again.edges)
    assert first.info["sae_final_loss"] == again.info["sae_final_loss"] != other.info["sae_final_loss"]
