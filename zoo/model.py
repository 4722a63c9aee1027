"""The zoo's language model: a small transformer_lens ``HookedTransformer`` trained with a plain torch loop.

Sequential attention then MLP, LayerNorm, learned positional embeddings; one sentence per sequence,
``<bos>`` first, right-padded, next-token cross-entropy on every real token.
"""

from __future__ import annotations

import logging
import math
import random
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .grammar import Grammar
from .tokenizer import BOS, PAD

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
# called every ``eval_every`` steps with the step; returns figures recorded in the training curves
Evaluate = Callable[[int], dict]
MODEL_NAME = "toy-zoo-v2"


def _no_progress(stage: str, done: int, total: int) -> None:
    pass


@dataclass(frozen=True)
class ModelConfig:
    n_layers: int = 4
    d_model: int = 128
    n_heads: int = 4
    d_mlp: int = 512
    n_ctx: int = 64
    steps: int = 2400
    batch_size: int = 64
    lr: float = 3e-3
    warmup: int = 100
    weight_decay: float = 0.1
    noise: float = 0.06  # rate at which the corpus breaks a planted mechanism (de-saturates the tasks)
    bucket: int = 8  # documents of this many batches are drawn at once and batched by length (less padding)
    eval_every: int = 250  # steps between the held-out task checks recorded in the training curves


def hooked_config(cfg: ModelConfig, d_vocab: int):
    from transformer_lens import HookedTransformerConfig

    return HookedTransformerConfig(
        model_name=MODEL_NAME,
        n_layers=cfg.n_layers,
        d_model=cfg.d_model,
        n_heads=cfg.n_heads,
        d_head=cfg.d_model // cfg.n_heads,
        d_mlp=cfg.d_mlp,
        n_ctx=cfg.n_ctx,
        d_vocab=d_vocab,
        act_fn="gelu",
        normalization_type="LN",
        positional_embedding_type="standard",
        parallel_attn_mlp=False,
        original_architecture="toy-zoo",
        default_prepend_bos=True,
        tokenizer_prepends_bos=True,
        seed=None,  # we seed locally; a cfg seed would reseed the global RNGs
    )


def config_to_dict(hooked_cfg) -> dict:
    """The HookedTransformerConfig fields that rebuild it, as JSON-able values."""
    import dataclasses

    out = {}
    for f in dataclasses.fields(hooked_cfg):
        value = getattr(hooked_cfg, f.name)
        if isinstance(value, (str, int, float, bool)) or value is None:
            out[f.name] = value
    out.pop("device", None)
    out.pop("n_params", None)
    return out


def new_model(cfg: ModelConfig, d_vocab: int, seed: int, tokenizer=None):
    from transformer_lens import HookedTransformer

    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="HookedTransformer is deprecated", category=DeprecationWarning)
        torch.manual_seed(seed)
        model = HookedTransformer(hooked_config(cfg, d_vocab), tokenizer=tokenizer, move_to_device=False)
    return model


def encode(tokenizer, sentences: list[str], n_ctx: int) -> torch.Tensor:
    """``<bos>`` + tokens of each sentence, right-padded with ``<pad>`` to the longest: ``[n, len]``."""
    bos, pad = tokenizer.token_to_id(BOS), tokenizer.token_to_id(PAD)
    ids = [[bos] + enc.ids for enc in tokenizer.encode_batch(sentences, add_special_tokens=False)]
    length = max(len(x) for x in ids)
    if length > n_ctx:
        raise ValueError(f"a sentence has {length} tokens, more than the model's n_ctx {n_ctx}")
    out = torch.full((len(ids), length), pad, dtype=torch.long)
    for i, row in enumerate(ids):
        out[i, : len(row)] = torch.tensor(row)
    return out


def lm_loss(model, tokens: torch.Tensor, pad_id: int) -> torch.Tensor:
    logits = model(tokens, return_type="logits")
    targets = tokens[:, 1:]
    mask = targets != pad_id
    losses = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none")
    return (losses * mask.reshape(-1)).sum() / mask.sum()


def _length_buckets(grammar: Grammar, rng: random.Random, tokenizer, batch_size: int, n: int) -> list[list[str]]:
    """``n`` batches from ``n * batch_size`` fresh documents grouped by length, in a random order.

    Documents vary from 3 to 63 tokens; batching similar lengths cuts the padding (most of a batch's
    positions otherwise) without changing which documents the model sees.
    """
    docs = [grammar.sentence(rng) for _ in range(n * batch_size)]
    lengths = [len(enc.ids) for enc in tokenizer.encode_batch(docs, add_special_tokens=False)]
    order = sorted(range(len(docs)), key=lambda i: lengths[i])
    batches = [[docs[i] for i in order[b * batch_size : (b + 1) * batch_size]] for b in range(n)]
    rng.shuffle(batches)
    return batches


def train_model(model, tokenizer, grammar: Grammar, cfg: ModelConfig, seed: int,
                progress: Progress = _no_progress, evaluate: Evaluate | None = None) -> dict:
    """Train ``model`` in place on fresh grammar documents.

    Returns the curves: ``loss`` (mean training loss every 50 steps) and ``evaluations`` (``evaluate``'s
    figures every ``cfg.eval_every`` steps and at the end, each with its ``step``).
    """
    rng = random.Random(f"corpus-{seed}")
    pad = tokenizer.token_to_id(PAD)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                  betas=(0.9, 0.98))

    def lr_at(step: int) -> float:
        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        frac = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    model.train()
    history: list[float] = []
    evaluations: list[dict] = []
    running = 0.0
    queue: list[list[str]] = []
    for step in range(cfg.steps):
        if not queue:
            queue = _length_buckets(grammar, rng, tokenizer, cfg.batch_size, cfg.bucket)
        tokens = encode(tokenizer, queue.pop(), cfg.n_ctx)
        loss = lm_loss(model, tokens, pad)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        running += loss.item()
        if (step + 1) % 50 == 0 or step + 1 == cfg.steps:
            n = (step % 50) + 1
            history.append(running / n)
            log.info("model step %d/%d loss %.4f", step + 1, cfg.steps, running / n)
            running = 0.0
        if evaluate is not None and ((step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps):
            model.eval()
            with torch.random.fork_rng(devices=[]):
                evaluations.append({"step": step + 1, **evaluate(step + 1)})
            log.info("model step %d: %s", step + 1, evaluations[-1])
            model.train()
        progress("model", step + 1, cfg.steps)
    model.eval()
    return {"loss_every_50_steps": history, "evaluations": evaluations}
