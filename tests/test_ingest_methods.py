"""The numerics of circuit discovery on tiny random models, each checked against an independent computation
written here with plain transformer_lens hooks (not the ingest code)."""

from __future__ import annotations

import pytest
import torch
from sfc_graph.ingest.attribution import batch_effects
from sfc_graph.ingest.edges import KeptNodes, batch_edges
from sfc_graph.ingest.metrics import logit_diff
from sfc_graph.ingest.splice import SplicedModel
from sfc_graph.ingest.tasks import Example, Task, tokenize_task
from test_ingest_helpers import AGREEMENT, build_dictionaries, build_model, one_thread  # noqa: F401 (autouse)

from sfc_graph.sites import parse_site

F64 = torch.float64


def _task() -> Task:
    return Task("agree", tuple(Example(c, ca, p, pa) for c, p, ca, pa in AGREEMENT), "memory")


def _batch(handle, length: int = 6):
    tokenized = tokenize_task(_task(), handle)
    return next(b for b in tokenized.batches(16, handle.device) if b.n_pos == length)


def _sae_codes(dictionary, x):
    """f = relu((x - b_dec) @ W_enc + b_enc), written out independently of Dictionary.encode."""
    return torch.relu((x - dictionary.b_dec) @ dictionary.W_enc + dictionary.b_enc)


def _run_metric(model, batch, hooks):
    logits = model.run_with_hooks(batch.clean, fwd_hooks=hooks)
    last = logits[:, -1, :]
    rows = torch.arange(last.shape[0])
    return last[rows, batch.clean_answer] - last[rows, batch.patch_answer]


def _cache(model, tokens, names):
    _, cache = model.run_with_cache(tokens, names_filter=lambda name: name in names)
    return cache


def test_splice_leaves_logits_unchanged():
    """x = x̂ + e at every site reproduces the logits to 1e-5 (float32), with and without ablation masks."""
    handle = build_model()
    dictionaries = build_dictionaries(handle)
    spliced = SplicedModel(handle, dictionaries)
    batch = _batch(handle)
    plain = handle.model(batch.clean)
    spliced_logits = spliced.spliced_forward(batch.clean)
    assert torch.allclose(plain, spliced_logits, atol=1e-5, rtol=0)
    keep_f = {s: torch.ones(dictionaries[s].d_dict, dtype=torch.bool) for s in spliced.sites}
    keep_e = {s: torch.tensor(True) for s in spliced.sites}
    means = {s: (torch.zeros(dictionaries[s].d_dict), torch.zeros(handle.d_model)) for s in spliced.sites}
    kept_all = spliced.spliced_forward(batch.clean, keep_features=keep_f, keep_error=keep_e, means=means)
    assert torch.allclose(plain, kept_all, atol=1e-5, rtol=0)
    # and the splice is not vacuous: ablating every node changes the output
    none_f = {s: ~m for s, m in keep_f.items()}
    none_e = {s: ~m for s, m in keep_e.items()}
    ablated = spliced.spliced_forward(batch.clean, keep_features=none_f, keep_error=none_e, means=means)
    assert not torch.allclose(plain, ablated, atol=1e-3)


@pytest.mark.parametrize("site_name", ["embed", "attn_0", "mlp_1", "resid_1"])
def test_exact_matches_independent_activation_patching(site_name):
    handle = build_model(dtype=F64)
    dictionaries = build_dictionaries(handle).to("cpu", F64)
    spliced = SplicedModel(handle, dictionaries)
    batch = _batch(handle)
    effects, _, _ = batch_effects(spliced, batch, logit_diff, method="exact")
    site = parse_site(site_name)
    dictionary = dictionaries[site]
    model = handle.model
    clean_x = _cache(model, batch.clean, {site.hook})[site.hook]
    patch_x = _cache(model, batch.patch, {site.hook})[site.hook]
    f_clean, f_patch = _sae_codes(dictionary, clean_x), _sae_codes(dictionary, patch_x)
    e_clean = clean_x - (f_clean @ dictionary.W_dec + dictionary.b_dec)
    e_patch = patch_x - (f_patch @ dictionary.W_dec + dictionary.b_dec)
    m_clean = _run_metric(model, batch, [])

    changed = (f_patch != f_clean).nonzero()
    assert len(changed) > 0
    for b, p, i in changed[torch.randperm(len(changed), generator=torch.Generator().manual_seed(0))[:12]].tolist():
        def patch_feature(x, hook, b=b, p=p, i=i):
            f = _sae_codes(dictionary, x)
            error = x - (f @ dictionary.W_dec + dictionary.b_dec)
            f = f.clone()
            f[b, p, i] = f_patch[b, p, i]
            return f @ dictionary.W_dec + dictionary.b_dec + error

        expected = (_run_metric(model, batch, [(site.hook, patch_feature)]) - m_clean)[b]
        assert effects.features[site][b, p, i].item() == pytest.approx(expected.item(), abs=1e-9)
        # other examples are untouched by this example's patch
    for b, p in [(0, batch.n_pos - 1), (1, 2)]:
        def patch_error(x, hook, b=b, p=p):
            x = x.clone()
            x[b, p] += e_patch[b, p] - e_clean[b, p]
            return x

        expected = (_run_metric(model, batch, [(site.hook, patch_error)]) - m_clean)[b]
        assert effects.errors[site][b, p].item() == pytest.approx(expected.item(), abs=1e-9)


def test_attrib_equals_exact_for_a_metric_linear_in_the_site():
    """Without a final LayerNorm the logit difference is linear in the last residual stream."""
    handle = build_model(dtype=F64, normalization_type=None)
    dictionaries = build_dictionaries(handle).to("cpu", F64)
    spliced = SplicedModel(handle, dictionaries)
    batch = _batch(handle)
    site = parse_site("resid_1")
    attrib, _, _ = batch_effects(spliced, batch, logit_diff, method="attrib")
    exact, _, _ = batch_effects(spliced, batch, logit_diff, method="exact")
    assert exact.features[site].abs().max() > 1e-3
    torch.testing.assert_close(attrib.features[site], exact.features[site], atol=1e-9, rtol=1e-7)
    torch.testing.assert_close(attrib.errors[site], exact.errors[site], atol=1e-9, rtol=1e-7)


@pytest.mark.parametrize("site_name", ["embed", "attn_1", "mlp_0", "resid_0"])
def test_ig_is_complete(site_name):
    """With many steps, a site's IG node effects sum to m(patch at that site) - m(clean), per example."""
    handle = build_model(dtype=F64)
    dictionaries = build_dictionaries(handle).to("cpu", F64)
    spliced = SplicedModel(handle, dictionaries)
    batch = _batch(handle)
    site = parse_site(site_name)
    effects, _, _ = batch_effects(spliced, batch, logit_diff, method="ig", ig_steps=64)
    total = effects.features[site].sum(dim=(1, 2)) + effects.errors[site].sum(dim=1)

    patch_x = _cache(handle.model, batch.patch, {site.hook})[site.hook]
    expected = _run_metric(handle.model, batch, [(site.hook, lambda x, hook: patch_x)]) - _run_metric(
        handle.model, batch, []
    )
    assert expected.abs().max() > 1e-2
    torch.testing.assert_close(total, expected, atol=2e-3, rtol=2e-3)


@pytest.mark.parametrize("down_name,up_names", [
    ("resid_1", ["resid_0", "attn_1", "mlp_1"]),
    ("mlp_1", ["resid_0", "attn_1"]),
    ("attn_0", ["embed"]),
])
def test_edges_into_a_node_match_finite_differences(down_name, up_names):
    """Σ_u edge(u → d) over one upstream site = d/dε of (left · d) when only that site moves by εΔ and the
    other sites between them are held at their clean values (the "direct" wiring)."""
    handle = build_model(dtype=F64)
    dictionaries = build_dictionaries(handle).to("cpu", F64)
    spliced = SplicedModel(handle, dictionaries)
    batch = _batch(handle)
    effects, clean, patch = batch_effects(spliced, batch, logit_diff, method="attrib")
    kept = {s: KeptNodes(features=torch.arange(dictionaries[s].d_dict), error=True) for s in spliced.sites}
    blocks = {(blk.up.name, blk.down.name): blk.weights for blk in
              batch_edges(spliced, batch.clean, effects.grads, clean, patch, kept, per_position=False, chunk=7)}

    down = parse_site(down_name)
    d_dict = dictionaries[down].d_dict
    dictionary = dictionaries[down]
    model = handle.model
    names = {down.hook} | {parse_site(u).hook for u in up_names}
    clean_cache = _cache(model, batch.clean, names)
    patch_cache = _cache(model, batch.patch, names)
    left_x = effects.grads[down]  # ∂m/∂x at the downstream site
    left_f = left_x @ dictionary.W_dec.T
    node = int((effects.features[down].abs().sum(dim=(0, 1))).argmax())

    def downstream_value(moved: str, eps: float) -> tuple[float, float]:
        hooks = []
        for name in up_names:
            hook_name = parse_site(name).hook
            delta = patch_cache[hook_name] - clean_cache[hook_name] if name == moved else 0.0
            base = clean_cache[hook_name]
            hooks.append((hook_name, lambda x, hook, base=base, delta=delta: base + eps * delta))
        seen = {}
        hooks.append((down.hook, lambda x, hook: seen.__setitem__("x", x)))
        model.run_with_hooks(batch.clean, fwd_hooks=hooks)
        x = seen["x"]
        f = _sae_codes(dictionary, x)
        error = x - (f @ dictionary.W_dec + dictionary.b_dec)
        return float((left_f[..., node] * f[..., node]).sum()), float((left_x * error).sum())

    eps = 1e-6
    for up in up_names:
        plus, minus = downstream_value(up, eps), downstream_value(up, -eps)
        fd_feature = (plus[0] - minus[0]) / (2 * eps)
        fd_error = (plus[1] - minus[1]) / (2 * eps)
        weights = blocks[(up, down_name)]
        assert weights.shape[0] == d_dict + 1
        assert weights[node].sum().item() == pytest.approx(fd_feature, rel=1e-4, abs=1e-7)
        assert weights[d_dict].sum().item() == pytest.approx(fd_error, rel=1e-4, abs=1e-7)
    # sites that are not directly wired to the downstream site get no block
    assert all(down_name != key[1] or key[0] in up_names for key in blocks)


def test_transcoders_splice_and_stay_complete():
    """A transcoder at mlp_L reads the MLP's normalised input; the splice and IG completeness still hold."""
    from sfc_graph.ingest.dictionaries import Transcoder

    handle = build_model(dtype=F64)
    dictionaries = build_dictionaries(handle).to("cpu", F64)
    for layer in range(handle.n_layers):
        site = parse_site(f"mlp_{layer}")
        sae = dictionaries[site]
        transcoder = Transcoder(sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec, apply_b_dec_to_input=False,
                                input_hook=f"blocks.{layer}.ln2.hook_normalized")
        dictionaries.by_site[site].dictionary = transcoder
    spliced = SplicedModel(handle, dictionaries)
    batch = _batch(handle)
    assert torch.allclose(handle.model(batch.clean), spliced.spliced_forward(batch.clean), atol=1e-10)
    record = spliced.record(batch.clean)
    site = parse_site("mlp_1")
    normalized = _cache(handle.model, batch.clean, {"blocks.1.ln2.hook_normalized"})["blocks.1.ln2.hook_normalized"]
    torch.testing.assert_close(record.f[site], _sae_codes(dictionaries[site], normalized + dictionaries[site].b_dec))
    effects, _, _ = batch_effects(spliced, batch, logit_diff, method="ig", ig_steps=64)
    patch_x = _cache(handle.model, batch.patch, {site.hook})[site.hook]
    expected = _run_metric(handle.model, batch, [(site.hook, lambda x, hook: patch_x)]) - _run_metric(
        handle.model, batch, []
    )
    total = effects.features[site].sum(dim=(1, 2)) + effects.errors[site].sum(dim=1)
    torch.testing.assert_close(total, expected, atol=2e-3, rtol=2e-3)
    kept = {s: KeptNodes(features=torch.arange(dictionaries[s].d_dict), error=True) for s in spliced.sites}
    _, clean, patch = batch_effects(spliced, batch, logit_diff, method="attrib")
    blocks = batch_edges(spliced, batch.clean, effects.grads, clean, patch, kept, per_position=False)
    assert {(b.up.name, b.down.name) for b in blocks} >= {("resid_0", "mlp_1"), ("attn_1", "mlp_1")}
