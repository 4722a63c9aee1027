"""Head circuits: score every attention head of a model on a task and write the scores as a bundle.

Three methods, one bundle format (``head`` nodes; see sfc_graph.naming):

* ``discrete-sae`` (O'Neill & Bui 2024): train one small SAE on the position-averaged outputs of all heads on a
  few positive and negative prompts, take each head's argmax latent as its discrete code on every prompt, and
  score a head by the codes it shows on positives only (ingest/heads/codes.py). Node ``effect`` = the softmaxed
  score; head → head edges weighted by the code pairs that co-occur on positives only.
* ``eap``: attribution patching of each head's output (one forward and one backward pass), method name
  ``head-eap`` in the bundle; node ``effect`` = the attributed effect on the metric; head → output edges.
* ``exact``: activation patching of each head's output, one forward pass per head (``head-exact``).

    from sfc_graph.ingest.heads.compute import HeadSettings, compute_head_bundle
    compute_head_bundle(model="toy-zoo", task="ioi", settings=HeadSettings(method="discrete-sae"), out="b/ioi")
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from sfc_graph import naming
from sfc_graph.bundle import Bundle, check_bundle_destination, write_bundle
from sfc_graph.errors import ComputeError, TaskError

from ..metrics import logit_diff
from ..model import ModelHandle, load_model
from ..tasks import Task, load_task, tokenize_task
from . import codes as code_stats
from .examples import positives_and_negatives, resolve_negatives
from .patching import (
    HeadEffects,
    attributed_head_effects,
    exact_head_effects,
    mean_head_outputs,
    position_means,
)
from .sae import argmax_codes, train_head_sae
from .settings import BUNDLE_METHOD, HeadSettings

log = logging.getLogger(__name__)



@dataclass
class HeadScores:
    """One method's scores of every head (flat order ``layer * n_heads + head``)."""

    method: str
    n_layers: int
    n_heads: int
    scores: np.ndarray  # [n] the node score (effect column)
    extra: dict[str, np.ndarray]  # per-head statistics (extra node columns)
    edges: np.ndarray | None  # [n, n] head → head edge scores (discrete-sae)
    seconds: float  # wall clock
    info: dict[str, Any]
    cpu_seconds: float = 0.0  # CPU time of this process (robust to a busy machine; all threads summed)

    def ranking_scores(self, *, edges: bool = False, settings: HeadSettings | None = None) -> np.ndarray:
        """What ranks heads for evaluation: |effect| for eap/exact, the node score (or the edge scores
        aggregated to heads) for discrete-sae."""
        if edges:
            if self.edges is None:
                raise ComputeError(f"method {self.method} has no edge scores")
            settings = settings or HeadSettings()
            return code_stats.edge_head_scores(
                self.edges, aggregation=settings.edge_aggregation, top_fraction=settings.edge_top_fraction
            )
        return np.abs(self.scores) if self.method != "discrete-sae" else self.scores


# ---------------------------------------------------------------------------------------------- methods


def discrete_sae_scores(handle: ModelHandle, task: Task, settings: HeadSettings) -> HeadScores:
    """The published method on the first ``n_examples`` examples of ``task``."""
    start, cpu = time.perf_counter(), time.process_time()
    model = handle.model
    task = task.head(settings.n_examples)
    kind = resolve_negatives(settings.negatives, task.name)
    positives, negatives = positives_and_negatives(task, kind, seed=settings.seed)
    prompts = positives + negatives
    batches = _token_batches(handle, prompts, settings.batch_size)
    outputs = mean_head_outputs(model, batches, position=settings.position)  # [2n, H, d]
    positive = np.array([True] * len(positives) + [False] * len(negatives))

    generator = torch.Generator().manual_seed(settings.seed)
    order = torch.randperm(len(prompts), generator=generator)[: settings.n_sae_examples]
    sae, losses = train_head_sae(
        outputs[order], n_latents=settings.n_latents, l1=settings.l1, lr=settings.lr, epochs=settings.epochs,
        seed=settings.seed, decoder_norm=settings.decoder_norm,
    )
    codes = argmax_codes(sae, outputs).numpy()
    stats = code_stats.node_code_stats(codes, positive)
    raw = stats.raw_score(normalise=settings.normalise)
    edges = code_stats.edge_scores(codes, positive, normalise=settings.normalise)
    edge_heads = code_stats.edge_head_scores(
        edges, aggregation=settings.edge_aggregation, top_fraction=settings.edge_top_fraction
    )
    with torch.no_grad():
        latents = sae.encode(outputs)
    info = {
        "negatives": kind,
        "n_positives": len(positives),
        "n_negatives": len(negatives),
        "sae_final_loss": losses[-1],
        "sae_l0": float((latents > 0).float().sum(-1).mean()),
        "sae_codes_used": int(len(np.unique(codes))),
        "dataset_sha256": _prompts_sha256(prompts),
    }
    extra = {
        "score_raw": raw,
        "edge_score": edge_heads,
        "n_positive_codes": stats.n_positive_codes,
        "n_negative_codes": stats.n_negative_codes,
        "n_positive_only": stats.n_positive_only,
        "n_negative_only": stats.n_negative_only,
        "n_union": stats.n_union,
    }
    return HeadScores(
        "discrete-sae", int(model.cfg.n_layers), int(model.cfg.n_heads), code_stats.softmax(raw), extra, edges,
        time.perf_counter() - start, info, time.process_time() - cpu,
    )


def patching_scores(handle: ModelHandle, task: Task, settings: HeadSettings, *, exact: bool,
                    means_from: Task | None = None) -> HeadScores:
    """Per-head effects on the logit difference, by exact patching or attribution patching."""
    start, cpu = time.perf_counter(), time.process_time()
    task = task.head(settings.n_examples)
    if not task.has_counterfactuals:
        raise TaskError(f"task {task.name}: head patching uses the logit difference, which needs patch prompts")
    batches = tokenize_task(task, handle).batches(settings.batch_size, handle.device)
    means = position_means(handle.model, batches) if settings.patch == "mean" else None
    compute = exact_head_effects if exact else attributed_head_effects
    effects: HeadEffects = compute(handle.model, batches, logit_diff, patch=settings.patch, means=means)
    scores = effects.effects.numpy()
    model = handle.model
    info = {"metric_clean": effects.metric_clean, "dataset_sha256": task.sha256()}
    if effects.metric_patch is not None:
        info["metric_patch"] = effects.metric_patch
    return HeadScores(
        "exact" if exact else "eap", int(model.cfg.n_layers), int(model.cfg.n_heads), scores, {}, None,
        time.perf_counter() - start, info, time.process_time() - cpu,
    )


def head_scores(handle: ModelHandle, task: Task, settings: HeadSettings) -> HeadScores:
    if settings.method == "discrete-sae":
        return discrete_sae_scores(handle, task, settings)
    return patching_scores(handle, task, settings, exact=settings.method == "exact")


# ----------------------------------------------------------------------------------------------- bundle


def head_circuit_id(handle: ModelHandle, task: Task, settings: HeadSettings) -> str:
    """Content hash of the model's weights, the examples and the settings."""
    payload = {
        "model": handle.model_id,
        "model_sha256": handle.weights_sha256,
        "dataset_sha256": task.head(settings.n_examples).sha256(),
        "settings": settings.identity(),
    }
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", task.name).strip("-") or "task"
    return f"{name}.{BUNDLE_METHOD[settings.method]}.{digest[:20]}"


def head_tables(result: HeadScores, settings: HeadSettings) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Bundle node and edge tables of ``result``: every head, and the edges above the floor."""
    layers = np.repeat(np.arange(result.n_layers), result.n_heads)
    heads = np.tile(np.arange(result.n_heads), result.n_layers)
    ids = [naming.head_id(int(layer), int(head)) for layer, head in zip(layers, heads)]
    nodes = pl.DataFrame({
        "node_id": ids,
        "kind": [naming.HEAD] * len(ids),
        "site": [naming.HEAD_SITE] * len(ids),
        "layer": layers.astype(np.int64),
        "index": heads.astype(np.int64),
        "position": np.full(len(ids), -1, dtype=np.int64),
        "effect": result.scores.astype(np.float64),
        **{name: values for name, values in result.extra.items()},
    })
    src, dst, weight = [], [], []
    if result.edges is not None:
        n = len(ids)
        for a in range(n):
            for b in range(a + 1, n):  # the co-occurrence score is symmetric: one edge, earlier head first
                w = float(max(result.edges[a, b], result.edges[b, a]))
                if w > settings.edge_floor:
                    src.append(ids[a]), dst.append(ids[b]), weight.append(w)
    else:
        # Patching baselines: each head's effect on the metric, as an edge into the output node.
        nodes = pl.concat([nodes, _output_row(result, nodes)], how="diagonal_relaxed")
        src, dst, weight = list(ids), [naming.OUTPUT_ID] * len(ids), [float(s) for s in result.scores]
    edges = pl.DataFrame(
        {"src": src, "dst": dst, "src_position": [-1] * len(src), "dst_position": [-1] * len(src), "weight": weight},
        schema={"src": pl.String, "dst": pl.String, "src_position": pl.Int64, "dst_position": pl.Int64,
                "weight": pl.Float64},
    )
    return nodes, edges


def _output_row(result: HeadScores, nodes: pl.DataFrame) -> pl.DataFrame:
    return pl.DataFrame({
        "node_id": [naming.OUTPUT_ID], "kind": [naming.OUTPUT], "site": ["output"], "layer": [-1],
        "index": [None], "position": [-1], "effect": [float(result.info.get("metric_clean", 0.0))],
    }, schema={k: nodes.schema[k] for k in ("node_id", "kind", "site", "layer", "index", "position", "effect")})


def head_manifest(handle: ModelHandle, task: Task, settings: HeadSettings, result: HeadScores) -> dict[str, Any]:
    sae = settings.method == "discrete-sae"
    manifest: dict[str, Any] = {
        "circuit_id": head_circuit_id(handle, task, settings),
        "task": task.name,
        "model": handle.model_id,
        "model_sha256": handle.weights_sha256,
        "dictionaries": {},
        "method": BUNDLE_METHOD[settings.method],
        "metric": "unique-positive-codes" if sae else "logit_diff",
        "aggregation": "mean over positions" if sae else "sum over positions",
        "node_floor": 0.0,
        "edge_floor": settings.edge_floor if sae else 0.0,
        "n_examples": min(settings.n_examples, len(task.examples)),
        "dataset_sha256": result.info["dataset_sha256"],
        "settings": settings.identity(),
        "compute_seconds": round(result.seconds, 4),
        "compute_cpu_seconds": round(result.cpu_seconds, 4),
        "task_source": task.source,
        "head_scores": (
            "effect = softmax over heads of the number of codes shown on positives only; edges = code pairs "
            "co-occurring on positives only" if sae else
            f"effect = IE of the head's output on the logit difference ({settings.patch} patch, "
            f"{'exact' if settings.method == 'exact' else 'attribution'})"
        ),
        **{k: v for k, v in result.info.items() if k != "dataset_sha256"},
    }
    if not sae:
        manifest["patch"] = settings.patch
    return manifest


def compute_head_bundle(
    *, model: str | ModelHandle, task: str | Task, out: str | Path, settings: HeadSettings = HeadSettings(),
    device: str = "auto", overwrite: bool = False,
) -> Bundle:
    """Load what the specs name, score the heads and write the bundle to ``out``."""
    out = check_bundle_destination(out, overwrite=overwrite)
    handle = model if isinstance(model, ModelHandle) else load_model(model, device=device)
    task_obj = task if isinstance(task, Task) else load_task(task)
    result = head_scores(handle, task_obj, settings)
    nodes, edges = head_tables(result, settings)
    manifest = head_manifest(handle, task_obj, settings, result)
    log.info("head circuit %s: %d heads, %d edges, %.2f s", manifest["circuit_id"], result.scores.size,
             edges.height, result.seconds)
    return write_bundle(out, manifest, nodes, edges, overwrite=overwrite)


# ---------------------------------------------------------------------------------------------- helpers


def _token_batches(handle: ModelHandle, prompts: list[str], batch_size: int) -> list[torch.Tensor]:
    """Prompts tokenized and grouped into equal-length batches, keeping the prompts' order overall."""
    from ..model import tokenize

    tokens = [tokenize(handle, text) for text in prompts]
    batches, start = [], 0
    while start < len(tokens):
        end = start
        while end < len(tokens) and end - start < batch_size and len(tokens[end]) == len(tokens[start]):
            end += 1
        batches.append(torch.tensor(tokens[start:end], dtype=torch.long, device=handle.device))
        start = end
    return batches


def _prompts_sha256(prompts: list[str]) -> str:
    digest = hashlib.sha256()
    for text in prompts:
        digest.update(text.encode())
        digest.update(b"\n")
    return digest.hexdigest()
