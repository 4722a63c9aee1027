"""Scoring head rankings against a ground-truth circuit (ROC AUC), and that ground truth itself.

Ground truth, where no published circuit exists (the toy zoo): each head's effect on the logit difference by
exact patching of its output (:func:`~.patching.exact_head_effects`), with the counterfactual prompt or the
per-position dataset mean as the patch. The "true" circuit is every head whose ``|effect|`` is at least
``threshold`` times the task's whole effect ``|m(clean) − m(patch)|`` (mean over examples): the heads that on
their own move the metric by that fraction of what the counterfactual moves it. Default 0.1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sfc_graph.errors import ComputeError

from ..metrics import logit_diff
from ..model import ModelHandle
from ..tasks import Task, tokenize_task
from .patching import exact_head_effects, position_means
from .settings import PATCHES

DEFAULT_THRESHOLD = 0.1


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for boolean ``labels``: the probability that a random positive
    outscores a random negative, ties counting one half (Mann–Whitney U from average ranks). NaN when one class
    is empty.

    >>> roc_auc(np.array([1, 0, 1, 0]), np.array([0.9, 0.1, 0.5, 0.5]))
    0.875
    """
    labels = np.asarray(labels, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    start = 0
    while start < len(scores):  # average ranks over ties
        end = start
        while end + 1 < len(scores) and sorted_scores[end + 1] == sorted_scores[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2 + 1
        start = end + 1
    u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


@dataclass(frozen=True)
class GroundTruth:
    effects: np.ndarray  # [n_heads] exact patching effect of each head on the logit difference
    whole_effect: float  # |m(clean) − m(patch)| (counterfactual), or |m(clean)| when ablating to the mean
    threshold: float  # fraction of whole_effect
    patch: str

    @property
    def in_circuit(self) -> np.ndarray:
        return np.abs(self.effects) >= self.threshold * self.whole_effect


@dataclass(frozen=True)
class GroundTruthSettings:
    """How the ground truth is measured: the patch, the examples (the first ``n_examples`` of the task) and the
    threshold as a fraction of the whole effect. ``batch_size`` is execution only."""

    patch: str = "counterfactual"
    n_examples: int = 100
    threshold: float = DEFAULT_THRESHOLD
    batch_size: int = 64

    def __post_init__(self) -> None:
        if self.patch not in PATCHES:
            raise ComputeError(f"patch must be one of {', '.join(PATCHES)}, not {self.patch!r}")
        if self.n_examples < 1 or self.batch_size < 1 or self.threshold < 0:
            raise ComputeError("n_examples and batch_size must be at least 1 and threshold >= 0")


def ground_truth(handle: ModelHandle, task: Task, settings: GroundTruthSettings = GroundTruthSettings()) -> GroundTruth:
    """Exact per-head patching on the first ``n_examples`` examples (see the module docstring)."""
    patch, threshold, batch_size = settings.patch, settings.threshold, settings.batch_size
    task = task.head(settings.n_examples)
    if not task.has_counterfactuals:
        raise ComputeError(f"task {task.name}: the ground truth uses the logit difference, which needs patch prompts")
    batches = tokenize_task(task, handle).batches(batch_size, handle.device)
    means = position_means(handle.model, batches) if patch == "mean" else None
    found = exact_head_effects(handle.model, batches, logit_diff, patch=patch, means=means)
    # The whole effect is that of the counterfactual prompt in both cases, so that one threshold means the
    # same for both kinds of patch.
    if found.metric_patch is None:
        raise ComputeError(f"task {task.name}: no patch prompts to measure the whole effect")
    whole = abs(found.metric_clean - found.metric_patch)
    return GroundTruth(found.effects.numpy(), whole, threshold, patch)
