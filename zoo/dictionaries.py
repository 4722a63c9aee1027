"""Sparse dictionaries for the zoo: a ReLU SAE per site and a transcoder per MLP, saved as SAELens files.

One recipe serves both: ``f = relu(x @ W_enc + b_enc)``, ``y_hat = f @ W_dec + b_dec`` with ``y = x`` for
an SAE and ``y`` the MLP output for a transcoder (``x`` its normalised input). Training works on inputs and
targets rescaled to unit mean squared norm (so one set of hyper-parameters fits every site) and folds the
scales back into the weights on saving; decoder rows are kept at unit norm, so the L1 penalty on ``f`` is
the usual norm-weighted one. The L1 coefficient follows a controller that steers the batch L0 towards a
target, then is frozen for the last part of training; latents that stop firing are resampled towards
badly reconstructed inputs (Bricken et al. 2023) at regular checks in the first 60% of training.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

log = logging.getLogger(__name__)

WEIGHTS_FILE = "sae_weights.safetensors"
CFG_FILE = "cfg.json"


@dataclass(frozen=True)
class DictConfig:
    d_sae: int = 256
    steps: int = 1500
    batch_size: int = 256
    lr: float = 2e-3
    target_l0: float = 40.0
    l1_init: float = 1e-3
    freeze_l1_at: float = 0.7  # fraction of steps after which the L1 coefficient stays fixed
    resample_at: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6)


@dataclass
class Dictionary:
    """Weights in the SAELens orientation: ``W_enc [d_in, d_sae]``, ``W_dec [d_sae, d_out]``."""

    W_enc: torch.Tensor
    b_enc: torch.Tensor
    W_dec: torch.Tensor
    b_dec: torch.Tensor

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x @ self.W_enc + self.b_enc)

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        return f @ self.W_dec + self.b_dec

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: getattr(self, k).detach().contiguous().clone() for k in ("W_enc", "b_enc", "W_dec", "b_dec")}


def train_dictionary(x: torch.Tensor, y: torch.Tensor | None, cfg: DictConfig, seed: int,
                     progress: Callable[[int, int], None] | None = None) -> tuple[Dictionary, dict]:
    """Fit a dictionary reading ``x [n, d_in]`` and reconstructing ``y [n, d_out]`` (``x`` itself if None)."""
    is_sae = y is None
    y = x if y is None else y
    gen = torch.Generator().manual_seed(seed)
    x_scale = x.pow(2).sum(-1).mean().sqrt()
    y_scale = y.pow(2).sum(-1).mean().sqrt()
    xs, ys = x / x_scale, y / y_scale
    y_mean = ys.mean(0)
    y_var = (ys - y_mean).pow(2).sum(-1).mean()
    d_in, d_out, n = xs.shape[1], ys.shape[1], xs.shape[0]

    W_dec = torch.randn(cfg.d_sae, d_out, generator=gen)
    W_dec /= W_dec.norm(dim=-1, keepdim=True)
    if is_sae:
        W_enc = W_dec.T.clone()
    else:
        W_enc = torch.randn(d_in, cfg.d_sae, generator=gen) / math.sqrt(d_in)
    params = {
        "W_enc": W_enc.requires_grad_(),
        "b_enc": torch.zeros(cfg.d_sae, requires_grad=True),
        "W_dec": W_dec.requires_grad_(),
        "b_dec": y_mean.clone().requires_grad_(),
    }
    optimizer = torch.optim.Adam(params.values(), lr=cfg.lr)
    l1 = cfg.l1_init
    fired = torch.zeros(cfg.d_sae, dtype=torch.long)
    resample_steps = {int(frac * cfg.steps) for frac in cfg.resample_at}
    n_resampled = 0
    l0_ema, fvu_ema = float(cfg.target_l0), 1.0
    for step in range(cfg.steps):
        idx = torch.randint(0, n, (cfg.batch_size,), generator=gen)
        xb, yb = xs[idx], ys[idx]
        f = torch.relu(xb @ params["W_enc"] + params["b_enc"])
        y_hat = f @ params["W_dec"] + params["b_dec"]
        mse = (y_hat - yb).pow(2).sum(-1).mean() / y_var
        sparsity = f.sum(-1).mean()
        loss = mse + l1 * sparsity
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            params["W_dec"] /= params["W_dec"].norm(dim=-1, keepdim=True).clamp_min(1e-8)
            active = f > 0
            fired += active.sum(0)
            l0 = active.sum(-1).float().mean().item()
            l0_ema = 0.9 * l0_ema + 0.1 * l0
            fvu_ema = 0.9 * fvu_ema + 0.1 * mse.item()
            if step < cfg.freeze_l1_at * cfg.steps:
                # multiplicative controller: more L1 when too dense, less when too sparse
                l1 *= math.exp(0.02 * (l0_ema - cfg.target_l0) / cfg.target_l0)
            if step in resample_steps:
                # dead or nearly so since the last check: fired on fewer than 3 of the window's inputs
                n_resampled += _resample_dead(params, fired < 3, xs, ys, gen)
                optimizer = torch.optim.Adam(params.values(), lr=cfg.lr)
                fired.zero_()
        if progress is not None:
            progress(step + 1, cfg.steps)
    with torch.no_grad():
        W_dec, b_dec = _refit_decoder(params["W_enc"], params["b_enc"], xs, ys, gen)
        dictionary = Dictionary(
            W_enc=params["W_enc"].detach() / x_scale,
            b_enc=params["b_enc"].detach().clone(),
            W_dec=W_dec * y_scale,
            b_dec=b_dec * y_scale,
        )
    stats = {"l1_coefficient": l1, "train_l0": l0_ema, "train_fvu": fvu_ema, "resampled": n_resampled}
    log.info("dictionary trained: %s", stats)
    return dictionary, stats


def _refit_decoder(W_enc: torch.Tensor, b_enc: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor,
                   gen: torch.Generator, max_rows: int = 50_000) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares decoder for the trained encoder's codes: undoes the L1 penalty's shrinkage.

    The codes (hence L0 and dead latents) stay as trained; only the linear read-out is refit, with a
    small ridge so that rarely active latents keep finite rows.
    """
    idx = torch.randperm(xs.shape[0], generator=gen)[:max_rows]
    f = torch.relu(xs[idx] @ W_enc + b_enc)
    design = torch.cat([f, torch.ones(f.shape[0], 1)], dim=1)
    gram = (design.T @ design).double()
    gram += 1e-4 * torch.eye(gram.shape[0], dtype=gram.dtype) * gram.diagonal().mean()
    solution = torch.linalg.solve(gram, (design.T @ ys[idx]).double()).float()
    return solution[:-1].contiguous(), solution[-1].contiguous()


def _resample_dead(params: dict[str, torch.Tensor], dead: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor,
                   gen: torch.Generator) -> int:
    """Point dead latents at inputs the dictionary reconstructs worst; returns how many were reset."""
    n_dead = int(dead.sum())
    if n_dead == 0:
        return 0
    idx = torch.randint(0, xs.shape[0], (min(8192, xs.shape[0]),), generator=gen)
    xb, yb = xs[idx], ys[idx]
    f = torch.relu(xb @ params["W_enc"] + params["b_enc"])
    err = yb - (f @ params["W_dec"] + params["b_dec"])
    weights = err.pow(2).sum(-1)
    picks = torch.multinomial(weights / weights.sum(), n_dead, replacement=False, generator=gen)
    directions = err[picks] / err[picks].norm(dim=-1, keepdim=True).clamp_min(1e-8)
    inputs = xb[picks] / xb[picks].norm(dim=-1, keepdim=True).clamp_min(1e-8)
    alive_norm = params["W_enc"][:, ~dead].norm(dim=0).mean() if (~dead).any() else torch.tensor(1.0)
    dead_idx = dead.nonzero().squeeze(-1)
    params["W_dec"][dead_idx] = directions
    params["W_enc"][:, dead_idx] = inputs.T * alive_norm * 0.2
    params["b_enc"][dead_idx] = 0.0
    return n_dead


def sae_cfg(*, d_in: int, d_sae: int, hook_name: str, dictionary_id: str, model_name: str,
            hook_name_out: str | None = None, extra: dict | None = None) -> dict:
    """The SAELens ``cfg.json`` fields for a standard ReLU SAE (or a transcoder, with ``hook_name_out``)."""
    cfg = {
        "architecture": "standard" if hook_name_out is None else "transcoder",
        "d_in": d_in,
        "d_sae": d_sae,
        "hook_name": hook_name,
        "hook_layer": int(hook_name.split(".")[1]) if hook_name.startswith("blocks.") else 0,
        "apply_b_dec_to_input": False,
        "normalize_activations": "none",
        "dtype": "float32",
        "device": "cpu",
        "model_name": model_name,
        "dictionary_id": dictionary_id,
        "context_size": None,
        "prepend_bos": True,
    }
    if hook_name_out is not None:
        cfg["hook_name_out"] = hook_name_out
        cfg["d_out"] = d_in
    if extra:
        cfg.update(extra)
    return cfg


def save_dictionary(directory: Path, dictionary: Dictionary, cfg: dict) -> None:
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    save_file(dictionary.state_dict(), str(directory / WEIGHTS_FILE))
    (directory / CFG_FILE).write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def load_dictionary(directory: Path) -> tuple[Dictionary, dict]:
    from safetensors.torch import load_file

    cfg = json.loads((directory / CFG_FILE).read_text())
    weights = load_file(str(directory / WEIGHTS_FILE))
    return Dictionary(**{k: weights[k] for k in ("W_enc", "b_enc", "W_dec", "b_dec")}), cfg
