"""Metrics ``m`` read from the logits at the last position (docs/sites-and-metrics.md), one value per row."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .tasks import Answers

Metric = Callable[[Tensor, Answers], Tensor]


def logit_diff(logits: Tensor, answers: Answers) -> Tensor:
    """``logit(clean_answer) - logit(patch_answer)`` at the last position; ``[n]``."""
    last = logits[:, -1, :]
    rows = torch.arange(last.shape[0], device=last.device)
    return last[rows, answers.clean] - last[rows, answers.patch]


def neg_log_prob(logits: Tensor, answers: Answers) -> Tensor:
    """``-log p(clean_answer)`` at the last position; ``[n]``."""
    last = logits[:, -1, :].log_softmax(-1)
    return -last[torch.arange(last.shape[0], device=last.device), answers.clean]


METRICS: dict[str, Metric] = {"logit_diff": logit_diff, "neg_log_prob": neg_log_prob}
