"""Input-dependent attribution through transcoders, and the paper's greedy path search (seed 004, §4).

With every LayerNorm scale frozen at the clean run (see :mod:`ingest.transcoder_model`), a transcoder
feature's pre-activation is a linear function of the residual stream entering its MLP, and that stream is a
sum of components: the token and position embeddings, every earlier transcoder feature ``z_i · W_dec[i]``
(plus its decoder bias and its error ``mlp_out − transcoder(x)``), and every earlier attention head's output,
which splits per source position as ``pattern[dst, src] · v[src] W_O`` (plus ``b_O``). So

    pre_j(x) = Σ_components  component(x) · u_j  +  constant_j                         (exactly)

with ``u_j = C diag(w) W_enc[:, j] / s`` the feature's read direction. A feature's contribution factors into
its activation ``z_i(x)`` × the input-invariant pullback ``W_dec[i] · C diag(w) W_enc[:, j]`` × the frozen
``1/s``; a head's into the attention pattern × the OV term. :func:`decompose` returns every term of that sum
(the identity is tested to 1e-4); :func:`greedy_paths` is the paper's beam search over the strongest terms,
and :func:`paths_to_tables` turns the paths into circuit-bundle tables.

A *target* is any scalar of the forward pass that is linear in one residual-stream vector once scales are
frozen: a transcoder feature's pre-activation, a head's contribution to a downstream target (read at the
head's source position), or the logit difference at the last position.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from torch import Tensor

from sfc_graph.errors import ComputeError

from .transcoder_model import TranscoderModel

log = logging.getLogger(__name__)

# The kinds of terms in a decomposition. Only the first four are nodes of a circuit; the rest are constants.
NODE_TERMS = ("feature", "head", "token", "error")
CONSTANT_TERMS = ("position", "bias")


@dataclass
class Trace:
    """What one forward pass of one prompt leaves for attribution (batch dimension removed)."""

    tokens: list[int]
    resid_pre: list[Tensor]  # [layer] -> [pos, d_model]
    attn_scale: list[Tensor]  # [layer] -> [pos] (ones when the model has no LayerNorm)
    mlp_scale: list[Tensor]
    final_scale: Tensor
    pattern: list[Tensor]  # [layer] -> [head, dst, src]
    v: list[Tensor]  # [layer] -> [src, head, d_head]
    pre: list[Tensor]  # transcoder pre-activations [layer] -> [pos, d_sae], from the transcoder's own input
    z: list[Tensor]  # transcoder activations
    error: list[Tensor]  # mlp_out - transcoder reconstruction, [layer] -> [pos, d_model]
    logits: Tensor  # [pos, d_vocab]

    @property
    def n_positions(self) -> int:
        return len(self.tokens)


@torch.no_grad()
def run_trace(tm: TranscoderModel, tokens: list[int]) -> Trace:
    """Run the model (unchanged: transcoders only read) and keep what :func:`decompose` needs."""
    model = tm.model
    if not tokens:
        raise ComputeError("cannot attribute an empty prompt")
    if len(tokens) > int(model.cfg.n_ctx):
        raise ComputeError(f"the prompt has {len(tokens)} tokens but the model reads at most {model.cfg.n_ctx}")
    wanted = {"ln_final.hook_scale"}
    for layer in range(tm.n_layers):
        wanted |= {f"blocks.{layer}.hook_resid_pre", f"blocks.{layer}.attn.hook_pattern",
                   f"blocks.{layer}.attn.hook_v", f"blocks.{layer}.hook_mlp_out",
                   f"blocks.{layer}.ln1.hook_scale", f"blocks.{layer}.ln2.hook_scale",
                   tm.transcoders[layer].input_hook or f"blocks.{layer}.ln2.hook_normalized"}
    device = tm.handle.device
    logits, cache = model.run_with_cache(torch.tensor([tokens], device=device), names_filter=lambda n: n in wanted)

    def get(name: str) -> Tensor:
        return cache[name][0].detach().float().cpu()

    def scale(name: str | None, n: int) -> Tensor:
        return get(name).reshape(n) if name and name in cache else torch.ones(n)

    n = len(tokens)
    pre, z, error = [], [], []
    for layer in range(tm.n_layers):
        tc = tm.transcoders[layer]
        x = get(tc.input_hook or f"blocks.{layer}.ln2.hook_normalized")
        p = tc.pre(x)
        a = tc.activation(p)
        pre.append(p)
        z.append(a)
        error.append(get(f"blocks.{layer}.hook_mlp_out") - tc.decode(a))
    return Trace(
        tokens=list(tokens),
        resid_pre=[get(f"blocks.{l}.hook_resid_pre") for l in range(tm.n_layers)],
        attn_scale=[scale(tm.attn_reads[l].scale_hook, n) for l in range(tm.n_layers)],
        mlp_scale=[scale(tm.mlp_reads[l].scale_hook, n) for l in range(tm.n_layers)],
        final_scale=scale(tm.final_read.scale_hook, n),
        pattern=[get(f"blocks.{l}.attn.hook_pattern") for l in range(tm.n_layers)],
        v=[get(f"blocks.{l}.attn.hook_v") for l in range(tm.n_layers)],
        pre=pre,
        z=z,
        error=error,
        logits=logits[0].detach().float().cpu(),
    )


# ------------------------------------------------------------------------------------------------ targets


@dataclass(frozen=True)
class Target:
    """A scalar read linearly (scales frozen) from the residual stream at ``position`` just before sublayer
    ``boundary`` (``2L`` = attention of layer L, ``2L+1`` = its MLP, ``2·n_layers`` = the unembedding)."""

    kind: str  # feature | head | output
    layer: int
    index: int  # feature index, head number, or -1 for the output
    position: int
    boundary: int
    direction: Tensor = field(repr=False)  # input-dependent read direction (frozen scales, pattern folded in)
    invariant: Tensor = field(repr=False)  # the same without the input-dependent factors
    constant: float = 0.0  # what no residual component writes (LN bias, encoder bias, b_V through W_O …)
    value: float = 0.0  # the scalar itself, as the forward pass computed it


def feature_target(tm: TranscoderModel, trace: Trace, layer: int, index: int, position: int) -> Target:
    """The pre-activation of transcoder feature ``index`` of layer ``layer`` at ``position``."""
    _check_position(trace, position)
    if not 0 <= layer < tm.n_layers or not 0 <= index < tm.d_sae(layer):
        raise ComputeError(f"no transcoder feature mlp_{layer}/{index} (layers 0..{tm.n_layers - 1}, "
                           f"{tm.d_sae(layer) if 0 <= layer < tm.n_layers else '?'} features)")
    invariant = tm.enc_read(layer, slice(index, index + 1))[:, 0]
    return Target("feature", layer, index, position, 2 * layer + 1,
                  direction=invariant / trace.mlp_scale[layer][position], invariant=invariant,
                  constant=float(tm.enc_constant(layer)[index]), value=float(trace.pre[layer][position, index]))


def logit_diff_target(tm: TranscoderModel, trace: Trace, answer: int, wrong: int | None, position: int = -1) -> Target:
    """``logit(answer) − logit(wrong)`` (or ``logit(answer)``) at ``position`` (default: the last)."""
    position = position % trace.n_positions
    W_U, b_U = tm.model.W_U.detach().float(), tm.model.b_U.detach().float()
    reads = W_U[:, answer] - (W_U[:, wrong] if wrong is not None else 0.0)
    bias = float(b_U[answer] - (b_U[wrong] if wrong is not None else 0.0))
    invariant = tm.final_read.direction(reads[:, None])[:, 0]
    constant = float(tm.final_read.constant(reads[:, None])[0]) + bias
    value = float(trace.logits[position, answer] - (trace.logits[position, wrong] if wrong is not None else 0.0))
    return Target("output", -1, -1, position, 2 * tm.n_layers, direction=invariant / trace.final_scale[position],
                  invariant=invariant, constant=constant, value=value)


def _check_position(trace: Trace, position: int) -> None:
    if not 0 <= position < trace.n_positions:
        raise ComputeError(f"position {position} is outside the prompt (0..{trace.n_positions - 1})")


# ------------------------------------------------------------------------------------------- decomposition


@dataclass(frozen=True)
class Term:
    """One term of a target's decomposition: a residual component's contribution ``value``."""

    kind: str  # feature | head | token | error | position | bias
    layer: int  # -1 for tokens, positions and the target's own constant
    index: int  # feature index, head number, token id; -1 otherwise
    position: int  # the component's position (a head's *source* position)
    value: float
    invariant: float | None = None  # the input-invariant weight (features, tokens); None where there is none
    activation: float | None = None  # z_i for features, 1 for tokens


@torch.no_grad()
def decompose(tm: TranscoderModel, trace: Trace, target: Target) -> list[Term]:
    """Every term of ``target.value`` = Σ terms (exact with frozen scales; see the module docstring)."""
    p, u, ui = target.position, target.direction, target.invariant
    terms: list[Term] = []
    token = trace.tokens[p]
    terms.append(Term("token", -1, token, p, float(tm.W_E[token] @ u), float(tm.W_E[token] @ ui), 1.0))
    terms.append(Term("position", -1, -1, p, float(tm.W_pos[p] @ u)))
    for layer in range(tm.n_layers):
        if 2 * layer < target.boundary:
            terms += _head_terms(tm, trace, layer, p, u)
            terms.append(Term("bias", layer, -1, p, float(tm.model.b_O[layer].detach().float() @ u)))
        if 2 * layer + 1 < target.boundary:
            W_dec = tm.W_dec(layer)
            active = torch.nonzero(trace.z[layer][p]).flatten()
            z = trace.z[layer][p, active]
            reads, invariant = W_dec[active] @ u, W_dec[active] @ ui
            for i, zi, r, inv in zip(active.tolist(), z.tolist(), reads.tolist(), invariant.tolist()):
                terms.append(Term("feature", layer, i, p, zi * r, inv, zi))
            terms.append(Term("bias", layer, -1, p, float(tm.transcoders[layer].b_dec @ u)))
            terms.append(Term("error", layer, -1, p, float(trace.error[layer][p] @ u)))
    terms.append(Term("bias", -1, -1, p, target.constant))
    return terms


def _head_terms(tm: TranscoderModel, trace: Trace, layer: int, p: int, u: Tensor) -> list[Term]:
    W_O = tm.model.W_O[layer].detach().float()  # [head, d_head, d_model]
    WOu = W_O @ u  # [head, d_head]
    v = trace.v[layer][: p + 1]  # [src, head, d_head]: causal, sources up to p
    values = trace.pattern[layer][:, p, : p + 1] * torch.einsum("shd,hd->hs", v, WOu)  # [head, src]
    return [Term("head", layer, h, s, float(values[h, s])) for h in range(values.shape[0]) for s in range(values.shape[1])]


def head_target(tm: TranscoderModel, trace: Trace, parent: Target, layer: int, head: int, source: int) -> Target:
    """The contribution of head ``(layer, head)`` from ``source`` to ``parent``, as a target read at ``source``
    (the attention pattern and both frozen scales folded into its direction)."""
    pattern = float(trace.pattern[layer][head, parent.position, source])
    W_O, W_V = tm.W_O(layer, head), tm.W_V(layer, head)
    read = tm.attn_reads[layer]
    WOu, WOui = W_O @ parent.direction, W_O @ parent.invariant
    direction = pattern * read.direction((W_V @ WOu)[:, None])[:, 0] / trace.attn_scale[layer][source]
    invariant = read.direction((W_V @ WOui)[:, None])[:, 0]
    b_V = tm.model.b_V[layer, head].detach().float()
    constant = pattern * float((read.constant(W_V) + b_V) @ WOu)
    value = pattern * float(trace.v[layer][source, head] @ WOu)
    return Target("head", layer, head, source, 2 * layer, direction=direction, invariant=invariant,
                  constant=constant, value=value)


# --------------------------------------------------------------------------------------------- path search


@dataclass(frozen=True)
class Step:
    """One node of a path: its contribution to the step before it (the root's is its own value)."""

    kind: str  # feature | head | token | error | output
    layer: int
    index: int
    position: int  # heads: the position they write to (the source is the next step's position)
    contribution: float  # uncapped
    score: float  # what the beam ranks by (contribution, capped as in the paper)
    invariant: float | None
    activation: float | None
    target: Target | None = field(default=None, repr=False)  # None for leaves (tokens, errors)

    @property
    def key(self) -> tuple[str, int, int, int]:
        return (self.kind, self.layer, self.index, self.position)


@dataclass(frozen=True)
class PathSettings:
    """The paper's ``greedy_get_top_paths`` knobs (defaults: theirs, with errors kept as leaves)."""

    num_iters: int = 2  # path length beyond the root
    num_branches: int = 5  # children per node, and paths kept per iteration
    ignore_bos: bool = True  # skip attention from position 0 (the attention sink)
    cap: bool = True  # cap a contribution at the smallest feature activation on its path (zero-ablation bound)
    include_errors: bool = True  # transcoder error terms compete as leaves


def root_step(tm: TranscoderModel, trace: Trace, target: Target) -> Step:
    if target.kind == "feature":
        activation = float(trace.z[target.layer][target.position, target.index])
        return Step("feature", target.layer, target.index, target.position, target.value, activation, None,
                    activation, target)
    return Step("output", -1, -1, target.position, target.value, target.value, None, None, target)


def children(tm: TranscoderModel, trace: Trace, step: Step, settings: PathSettings, cap: float | None) -> list[Step]:
    """The ``num_branches`` strongest (largest signed, as in the paper) terms of ``step``'s target."""
    target = step.target
    assert target is not None
    candidates = []
    for term in decompose(tm, trace, target):
        if term.kind not in NODE_TERMS or (term.kind == "error" and not settings.include_errors):
            continue
        if term.kind == "head" and settings.ignore_bos and term.position == 0:
            continue
        score = min(term.value, cap) if cap is not None else term.value
        candidates.append((score, term))
    candidates.sort(key=lambda c: c[0], reverse=True)
    out = []
    for score, term in candidates[: settings.num_branches]:
        if term.kind == "feature":
            child_target = feature_target(tm, trace, term.layer, term.index, term.position)
            out.append(Step("feature", term.layer, term.index, term.position, term.value, score, term.invariant,
                            term.activation, child_target))
        elif term.kind == "head":
            child_target = head_target(tm, trace, target, term.layer, term.index, term.position)
            out.append(Step("head", term.layer, term.index, target.position, term.value, score, None, None,
                            child_target))
        else:
            out.append(Step(term.kind, term.layer, term.index, term.position, term.value, score, term.invariant,
                            term.activation))
    return out


def greedy_paths(tm: TranscoderModel, trace: Trace, root: Target, settings: PathSettings = PathSettings()) -> list[list[list[Step]]]:
    """The paper's greedy beam: ``result[k]`` holds the ``num_branches`` best paths of ``k + 2`` steps.

    Each iteration extends every kept path by its last node's ``num_branches`` strongest terms, then keeps the
    ``num_branches`` new paths whose last contribution (capped: never above the smallest feature activation
    on the path, i.e. a zero-ablation bound) is largest.
    """
    if settings.num_iters < 1 or settings.num_branches < 1:
        raise ComputeError("num_iters and num_branches must be at least 1")
    current = [[root_step(tm, trace, root)]]
    found: list[list[list[Step]]] = []
    for _ in range(settings.num_iters):
        extended = []
        for path in current:
            last = path[-1]
            if last.target is None:
                continue  # a token or an error: nothing upstream
            cap = None
            if settings.cap:
                activations = [s.score for s in path if s.kind == "feature"]
                cap = min(activations) if activations else None
            extended += [path + [child] for child in children(tm, trace, last, settings, cap)]
        extended.sort(key=lambda path: path[-1].score, reverse=True)
        current = extended[: settings.num_branches]
        if not current:
            break
        found.append(current)
    return found
