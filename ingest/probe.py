"""A linear classifier on a language model's mean-pooled last residual stream (SHIFT's classifier, seed 000).

The classifier is attached *as the model's output*: :func:`attach_probe` returns a copy of the model whose
final layer norm and unembedding are replaced by :class:`PooledProbeHead` — the mean over real tokens of the
last residual stream, then a linear map to class logits, broadcast to every position. Every metric of
:mod:`metrics` reads the last position, so ``neg_log_prob`` on that copy is ``-log C(y | x)``, and the one
attribution engine (splice, ``attrib`` / ``ig``, edges, evaluation, bundles) computes the classifier's circuit
unchanged. The handle carries the class names, so task answers name classes instead of tokens.

"Real tokens": every position except a prepended BOS (batches are grouped by length, so there is no padding).

    probe = train_probe(pooled, labels, n_classes=2)
    classifier = attach_probe(handle, probe, class_labels=("nurse", "professor"))
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from sfc_graph.errors import ComputeError

from .model import ModelHandle, wrap

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LinearProbe:
    """Class logits ``x @ weight.T + bias``; ``weight`` ``[n_classes, d]``, ``bias`` ``[n_classes]``."""

    weight: Tensor
    bias: Tensor

    def logits(self, x: Tensor) -> Tensor:
        return x.to(self.weight.dtype) @ self.weight.T + self.bias

    def predict(self, x: Tensor) -> Tensor:
        return self.logits(x).argmax(-1)

    def accuracy(self, x: Tensor, labels: Tensor) -> float:
        return float((self.predict(x) == labels.to(x.device)).double().mean())


def train_probe(
    x: Tensor, labels: Tensor, *, n_classes: int, l2: float = 1e-3, max_iter: int = 300, seed: int = 0
) -> LinearProbe:
    """Multinomial logistic regression by full-batch L-BFGS in float64 (deterministic for a given input).

    Inputs are standardised for the fit and the scaling folded back into the weights, so ``l2`` means the same
    whatever the scale of the activations. ``l2`` is the weight of ``½‖W‖²`` per example.
    """
    if x.ndim != 2 or labels.shape != (x.shape[0],):
        raise ComputeError(f"train_probe needs x [n, d] and labels [n]; got {tuple(x.shape)} and {tuple(labels.shape)}")
    if x.shape[0] == 0:
        raise ComputeError("train_probe: no examples to train on")
    present = torch.unique(labels)
    if len(present) < 2:
        raise ComputeError(f"train_probe: the training labels hold a single class ({int(present[0])}); a probe needs two")
    torch.manual_seed(seed)
    x64 = x.detach().to(torch.float64)
    mean, std = x64.mean(0), x64.std(0).clamp_min(1e-6)
    z = (x64 - mean) / std
    y = labels.to(x64.device).long()
    weight = torch.zeros(n_classes, x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe",
                                  tolerance_grad=1e-9, tolerance_change=1e-12)

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(z @ weight.T + bias, y) + 0.5 * l2 * (weight**2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    w = (weight.detach() / std).to(x.dtype)
    b = (bias.detach() - (weight.detach() / std) @ mean).to(x.dtype)
    return LinearProbe(weight=w, bias=b)


class PooledProbeHead(nn.Module):
    """Replaces ``ln_final`` + ``unembed``: mean of the last residual stream over real tokens, then the probe.

    Returns ``[batch, pos, n_classes]`` (the pooled logits at every position). Inside :meth:`reading_pooled`
    it returns the pooled activation ``[batch, pos, d_model]`` instead, so that any forward pass of the
    engine (with splices and ablations) can hand back what the probe reads.
    """

    def __init__(self, probe: LinearProbe, *, skip_first: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(probe.weight.detach().clone(), requires_grad=False)
        self.bias = nn.Parameter(probe.bias.detach().clone(), requires_grad=False)
        self.skip_first = skip_first
        self._emit_pooled = False

    def pool(self, resid: Tensor) -> Tensor:
        body = resid[:, 1:, :] if self.skip_first and resid.shape[1] > 1 else resid
        return body.mean(dim=1)

    def forward(self, resid: Tensor) -> Tensor:
        pooled = self.pool(resid)
        out = pooled if self._emit_pooled else pooled @ self.weight.T + self.bias
        return out.unsqueeze(1).expand(-1, resid.shape[1], -1)

    @contextlib.contextmanager
    def reading_pooled(self) -> Iterator[None]:
        self._emit_pooled = True
        try:
            yield
        finally:
            self._emit_pooled = False

    @property
    def probe(self) -> LinearProbe:
        return LinearProbe(weight=self.weight.detach(), bias=self.bias.detach())


def skips_bos(handle: ModelHandle) -> bool:
    """Whether text is tokenized with a prepended BOS (then position 0 is not a real token)."""
    return bool(getattr(handle.model.cfg, "default_prepend_bos", True))


def attach_probe(handle: ModelHandle, probe: LinearProbe, *, class_labels: tuple[str, ...],
                 name: str = "probe") -> ModelHandle:
    """A copy of the model whose output is the classifier (the input ``handle`` is left as it was)."""
    if probe.weight.shape[0] != len(class_labels):
        raise ComputeError(f"the probe has {probe.weight.shape[0]} classes but {len(class_labels)} class labels were given")
    if probe.weight.shape[1] != handle.d_model:
        raise ComputeError(f"the probe reads {probe.weight.shape[1]} dimensions but the model's d_model is {handle.d_model}")
    model = copy.deepcopy(handle.model)
    head = PooledProbeHead(probe, skip_first=skips_bos(handle))
    head.to(device=handle.device, dtype=model.cfg.dtype)
    model.ln_final = nn.Identity()  # the paper's probe reads the raw residual stream of the last layer
    model.unembed = head
    classifier = wrap(model, model_id=f"{handle.model_id}+{name}", source=handle.source)
    classifier.model_id = f"{handle.model_id}+{name}-{classifier.weights_sha256[:10]}"
    classifier.class_labels = tuple(class_labels)
    return classifier


def probe_head(handle: ModelHandle) -> PooledProbeHead:
    head = getattr(handle.model, "unembed", None)
    if not isinstance(head, PooledProbeHead):
        raise ComputeError(f"model {handle.model_id} has no classifier head (attach one with attach_probe)")
    return head
