"""What the model says about its attention heads: per-head outputs, exact per-head patching, attribution.

A head's output is its contribution to the residual stream after ``W_O`` (transformer_lens ``hook_result``,
without the shared ``b_O``): ``z[:, :, h] @ W_O[h]``. Patching a head's output is patching its ``hook_z``
slice, since the output is a fixed linear map of it; that is what the hooks here do, so that no
``use_attn_result`` flag (a d_model copy per head) is needed.

Heads are numbered ``layer * n_heads + head`` throughout (the flat order of the score arrays).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..metrics import Metric
from ..tasks import Batch
from .settings import PATCHES, POSITIONS


def z_hook(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_z"


def n_heads_of(model) -> int:
    return int(model.cfg.n_layers) * int(model.cfg.n_heads)


@torch.no_grad()
def mean_head_outputs(model, token_batches: Sequence[Tensor], *, position: str = "mean") -> Tensor:
    """``[examples, n_layers * n_heads, d_model]``: each head's output averaged over the positions of each
    example (``position="mean"``, as published) or at its last position (``"last"``, the published code's other
    option), for batches of equal-length token rows (examples in batch order)."""
    if position not in POSITIONS:
        raise ValueError(f"position must be one of {', '.join(POSITIONS)}")
    n_layers, n_heads = int(model.cfg.n_layers), int(model.cfg.n_heads)
    out = []
    for tokens in token_batches:
        _, cache = model.run_with_cache(tokens, names_filter=lambda name: name.endswith("attn.hook_z"))
        per_layer = []
        for layer in range(n_layers):
            z = cache[z_hook(layer)]  # [b, p, H, d_head]
            result = torch.einsum("bphd,hdm->bphm", z, model.blocks[layer].attn.W_O)
            per_layer.append(result.mean(dim=1) if position == "mean" else result[:, -1])  # [b, H, d_model]
        out.append(torch.stack(per_layer, dim=1).reshape(tokens.shape[0], n_layers * n_heads, -1))
    return torch.cat(out).float().cpu()


@dataclass
class PositionMeans:
    """Mean of every head's ``z`` at each position, within each template (over its examples long enough).

    Examples of different templates put different slots at the same position (ioi mixes templates of
    different lengths), so, as for the feature circuits' mean ablation (``ingest/evaluation.py``), a mean is
    only ever taken within a template; an untemplated task is one template, ``None``."""

    z: dict[str | None, list[Tensor]]  # template -> per layer [max_pos, H, d_head]

    def at(self, layer: int, batch: Batch) -> Tensor:
        return self.z[batch.template][layer][: batch.n_pos]


@torch.no_grad()
def position_means(model, batches: Sequence[Batch]) -> PositionMeans:
    n_layers = int(model.cfg.n_layers)
    sums: dict[str | None, list[Tensor]] = {}
    counts: dict[str | None, Tensor] = {}
    n_max: dict[str | None, int] = {}
    for batch in batches:
        n_max[batch.template] = max(n_max.get(batch.template, 0), batch.n_pos)
    for batch in batches:
        template = batch.template
        _, cache = model.run_with_cache(batch.clean, names_filter=lambda name: name.endswith("attn.hook_z"))
        if template not in sums:
            shape = cache[z_hook(0)].shape[2:]
            sums[template] = [torch.zeros((n_max[template], *shape), device=batch.clean.device,
                                          dtype=cache[z_hook(layer)].dtype) for layer in range(n_layers)]
            counts[template] = torch.zeros(n_max[template], device=batch.clean.device)
        counts[template][: batch.n_pos] += batch.size
        for layer in range(n_layers):
            sums[template][layer][: batch.n_pos] += cache[z_hook(layer)].sum(0)  # [p, H, d_head]
    return PositionMeans({t: [s / counts[t].clamp_min(1)[:, None, None] for s in layer_sums]
                          for t, layer_sums in sums.items()})


def _patch_values(model, batch: Batch, patch: str, means: PositionMeans | None) -> list[Tensor]:
    """Per layer, the ``z`` each head takes when patched: from the counterfactual prompt, or the mean."""
    n_layers = int(model.cfg.n_layers)
    if patch == "counterfactual":
        if batch.patch is None:
            raise ValueError("counterfactual patching needs a task with patch prompts")
        _, cache = model.run_with_cache(batch.patch, names_filter=lambda name: name.endswith("attn.hook_z"))
        return [cache[z_hook(layer)] for layer in range(n_layers)]
    if patch == "mean":
        assert means is not None
        return [means.at(layer, batch).expand(batch.size, -1, -1, -1) for layer in range(n_layers)]
    raise ValueError(f"unknown patch {patch!r}; use one of {', '.join(PATCHES)}")


@dataclass
class HeadEffects:
    effects: Tensor  # [n_heads] mean over examples of m(clean | head patched) - m(clean)
    metric_clean: float  # mean over examples
    metric_patch: float | None  # mean over examples of m(patch prompt), counterfactual only


@torch.no_grad()
def exact_head_effects(
    model, batches: Sequence[Batch], metric: Metric, *, patch: str, means: PositionMeans | None = None,
    advance: Callable[[int], None] | None = None,
) -> HeadEffects:
    """One forward pass per head and batch with that head's ``z`` replaced by its patch value."""
    n_layers, n_heads = int(model.cfg.n_layers), int(model.cfg.n_heads)
    total = torch.zeros(n_layers * n_heads, dtype=torch.float64)
    clean_sum, patch_sum, n = 0.0, 0.0, 0
    for batch in batches:
        answers = batch.answers()
        clean = metric(model(batch.clean), answers).double()
        values = _patch_values(model, batch, patch, means)
        if batch.patch is not None:
            patch_sum += float(metric(model(batch.patch), answers).double().sum())
        for layer in range(n_layers):
            for head in range(n_heads):
                def hook(z, hook, head=head, value=values[layer]):
                    z = z.clone()
                    z[:, :, head] = value[:, :, head]
                    return z

                logits = model.run_with_hooks(batch.clean, fwd_hooks=[(z_hook(layer), hook)])
                total[layer * n_heads + head] += float((metric(logits, answers).double() - clean).sum())
                if advance:
                    advance(1)
        clean_sum += float(clean.sum())
        n += batch.size
    has_patch = all(b.patch is not None for b in batches)
    return HeadEffects(total / n, clean_sum / n, patch_sum / n if has_patch else None)


def attributed_head_effects(
    model, batches: Sequence[Batch], metric: Metric, *, patch: str, means: PositionMeans | None = None,
) -> HeadEffects:
    """Attribution patching on heads: ``∇_z m |_clean · (z_patch − z_clean)`` per head, summed over positions
    and ``d_head``, averaged over examples (one clean forward and backward, plus the patch forward)."""
    n_layers, n_heads = int(model.cfg.n_layers), int(model.cfg.n_heads)
    total = torch.zeros(n_layers * n_heads, dtype=torch.float64)
    clean_sum, n = 0.0, 0
    for batch in batches:
        with torch.no_grad():
            values = _patch_values(model, batch, patch, means)
        saved: dict[int, Tensor] = {}

        def keep(z, hook):
            z.retain_grad()
            saved[int(hook.name.split(".")[1])] = z
            return z

        def track(resid, hook):
            # A leaf that requires grad at the stream's start, so every z downstream carries a gradient
            # (through all later heads too) even when the model's own parameters are frozen.
            return resid.detach().requires_grad_(True)

        with torch.enable_grad():
            logits = model.run_with_hooks(
                batch.clean,
                fwd_hooks=[("blocks.0.hook_resid_pre", track), (lambda name: name.endswith("attn.hook_z"), keep)],
            )
            m = metric(logits, batch.answers())
            m.sum().backward()
        for layer in range(n_layers):
            z = saved[layer]
            contribution = (z.grad * (values[layer] - z.detach())).sum(dim=(0, 1, 3))  # [H]
            total[layer * n_heads : (layer + 1) * n_heads] += contribution.double().cpu()
        model.zero_grad(set_to_none=True)
        clean_sum += float(m.detach().double().sum())
        n += batch.size
    return HeadEffects(total / n, clean_sum / n, None)
