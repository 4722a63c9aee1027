"""Computing one circuit end to end and writing it as a bundle (docs/sites-and-metrics.md, docs/bundle.md).

    handle = load_model("toy-zoo", device="cpu")
    dictionaries = load_dictionary_set(["toy-zoo"], n_layers=handle.n_layers, d_model=handle.d_model,
                                       model_id=handle.model_id)
    circuit = compute_circuit(handle, dictionaries, load_task("agreement_nounpp"), CircuitSettings())
    circuit.write("out/agreement_nounpp")

or, in one call from specs, :func:`compute_bundle`.

Steps: dataset means of every site (for mean ablation and evaluation); node effects per batch; aggregation
and the node threshold; edges between kept nodes per batch; evaluation at a list of thresholds; tables.
"""

from __future__ import annotations

import contextlib
import math
import dataclasses
import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import polars as pl
import torch
from torch import Tensor

from sfc_graph import naming
from sfc_graph.bundle import EDGE_COLUMNS, NODE_COLUMNS, Bundle, check_bundle_destination, write_bundle
from sfc_graph.errors import ComputeError
from sfc_graph.sites import Site

from .attribution import ABLATIONS, METHODS, PatchState, batch_effects, patch_state
from .dictionaries import DictionarySet, load_dictionary_set
from .edges import KeptNodes, batch_edges, output_parents
from .evaluation import (
    DEFAULT_EVAL_THRESHOLDS,
    AggregatedEffects,
    dataset_means,
    evaluate,
)
from .metrics import METRICS
from .model import ModelHandle, load_model
from .splice import SplicedModel
from .settings_checks import refuse_unknown, require
from .tasks import Task, load_task, tokenize_task

log = logging.getLogger(__name__)

AGGREGATIONS = ("sum", "none")
# Counterfactual patch codes kept from the node step for the edge step (saves a forward pass per batch) while
# they fit in this many elements (256 MiB of float32); beyond it the edge step recomputes them.
PATCH_CACHE_ELEMENTS = 1 << 26


@dataclass(frozen=True)
class CircuitSettings:
    """How a circuit is computed. Every field except the last three enters the circuit id.

    Defaults: ``ig`` with 10 steps; absolute thresholds 0.1 on node effects and 0.01 on edge weights
    (in units of the metric, e.g. logits); ``sum`` aggregation; the first 64 examples of the task; the
    metric chosen by the task (logit difference with counterfactuals, else ``-log p`` with mean ablation).
    """

    method: str = "ig"
    ig_steps: int = 10
    node_threshold: float = 0.1
    edge_threshold: float = 0.01
    aggregation: str = "sum"
    n_examples: int | None = 64
    metric: str | None = None  # None: logit_diff with counterfactuals, neg_log_prob without
    ablation: str = "mean"  # the patch of tasks without counterfactuals: mean or zero
    eval_thresholds: tuple[float, ...] = DEFAULT_EVAL_THRESHOLDS
    # execution only (same results up to rounding):
    batch_size: int = 32
    max_rows: int = 4096
    edge_chunk: int = 64

    EXECUTION_FIELDS = ("batch_size", "max_rows", "edge_chunk")

    def __post_init__(self) -> None:
        checks = [
            (self.method in METHODS, f"method must be one of {', '.join(METHODS)}, not {self.method!r}"),
            (self.ig_steps >= 1, "ig_steps must be at least 1"),
            (_finite(self.node_threshold) and self.node_threshold >= 0, "node_threshold must be a finite number >= 0"),
            (_finite(self.edge_threshold) and self.edge_threshold >= 0, "edge_threshold must be a finite number >= 0"),
            (all(_finite(t) and float(t) >= 0 for t in self.eval_thresholds),
             f"eval_thresholds must be finite numbers >= 0, not {list(self.eval_thresholds)}"),
            (self.aggregation in AGGREGATIONS, f"aggregation must be one of {', '.join(AGGREGATIONS)}"),
            (self.n_examples is None or self.n_examples >= 1, "n_examples must be at least 1"),
            (self.metric is None or self.metric in METRICS, f"metric must be one of {', '.join(METRICS)}"),
            (self.ablation in ABLATIONS, f"ablation must be one of {', '.join(ABLATIONS)}"),
            (self.batch_size >= 1 and self.max_rows >= 1 and self.edge_chunk >= 1, "batch sizes must be >= 1"),
        ]
        require(checks)
        object.__setattr__(self, "eval_thresholds", tuple(float(t) for t in self.eval_thresholds))

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["eval_thresholds"] = list(self.eval_thresholds)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CircuitSettings:
        """Build from a mapping, refusing keys that are not settings (a typo would silently do nothing)."""
        refuse_unknown(cls, data)
        data = dict(data)
        if "eval_thresholds" in data:
            data["eval_thresholds"] = tuple(data["eval_thresholds"])
        return cls(**data)

    def identity(self) -> dict[str, Any]:
        data = self.to_dict()
        for name in self.EXECUTION_FIELDS:
            data.pop(name)
        if self.method != "ig":
            data.pop("ig_steps")
        return data


# ------------------------------------------------------------------------------------------ progress


class Progress(Protocol):
    """Progress reporting; the CLI supplies a rich one. ``step`` yields an ``advance(n)`` callable."""

    def step(self, description: str, total: int) -> contextlib.AbstractContextManager[Callable[[int], None]]: ...


class NoProgress:
    @contextlib.contextmanager
    def step(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        log.info("%s (%d)", description, total)
        yield lambda n=1: None


# ------------------------------------------------------------------------------------------- circuit


@dataclass
class Circuit:
    manifest: dict[str, Any]
    nodes: pl.DataFrame
    edges: pl.DataFrame
    evaluation: list[dict[str, Any]] = field(default_factory=list)
    # every node's effect before thresholding (in memory only; the bundle keeps those above the floor)
    effects: AggregatedEffects | None = None

    @property
    def circuit_id(self) -> str:
        return self.manifest["circuit_id"]

    def write(self, out_dir: str | Path, *, overwrite: bool = False) -> Bundle:
        return write_bundle(out_dir, self.manifest, self.nodes, self.edges, overwrite=overwrite)


def _finite(value: Any) -> bool:
    try:
        return not isinstance(value, bool) and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def circuit_id(handle: ModelHandle, dictionaries: DictionarySet, task: Task, settings: CircuitSettings) -> str:
    """Content hash of every input: the same model, dictionaries, examples and settings give the same id."""
    task = task.head(settings.n_examples)
    payload = {
        "model": handle.model_id,
        "model_sha256": handle.weights_sha256,
        "dictionaries": {s: {"id": i.id, "sha256": i.sha256} for s, i in dictionaries.infos().items()},
        "dataset_sha256": task.sha256(),
        "settings": settings.identity(),
    }
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", task.name).strip("-") or "task"
    return f"{name}.{settings.method}.{digest[:20]}"


def compute_circuit(
    handle: ModelHandle,
    dictionaries: DictionarySet,
    task: Task,
    settings: CircuitSettings = CircuitSettings(),
    *,
    progress: Progress | None = None,
) -> Circuit:
    """Compute the sparse feature circuit of ``task`` (see the module docstring)."""
    started = time.perf_counter()
    progress = progress or NoProgress()
    if not dictionaries.sites:
        raise ComputeError("no dictionaries: a circuit needs at least one site with a dictionary")
    task = task.head(settings.n_examples)
    tokenized = tokenize_task(task, handle)
    per_position = settings.aggregation == "none"
    if per_position and len(tokenized.lengths) > 1:
        raise ComputeError(
            f"{task.source}: aggregation 'none' keeps positions, so every example needs the same token length "
            f"(found lengths {sorted(tokenized.lengths)}); use aggregation 'sum'"
        )
    if per_position and len(tokenized.templates) > 1:
        shown = ", ".join(sorted(str(t) for t in tokenized.templates))
        raise ComputeError(
            f"{task.source}: aggregation 'none' keeps positions, and examples of different templates put different "
            f"slots at the same position (templates: {shown}); pick one with TASK#TEMPLATE or use aggregation 'sum'"
        )
    metric_name = settings.metric or ("logit_diff" if task.has_counterfactuals else "neg_log_prob")
    if metric_name == "logit_diff" and not task.has_counterfactuals:
        raise ComputeError(f"{task.source}: the logit_diff metric needs counterfactuals (patch, patch_answer)")
    metric = METRICS[metric_name]
    if settings.method == "exact" and not task.has_counterfactuals and settings.ablation == "mean":
        log.warning("exact with mean ablation patches every latent at every position (one forward pass each); "
                    "expect it to be slow, or use ablation 'zero' or method 'ig'")
    dictionaries.to(handle.device, handle.model.cfg.dtype)
    spliced = SplicedModel(handle, dictionaries)
    sites = spliced.sites
    batches = tokenized.batches(settings.batch_size, handle.device)
    n_examples = len(task.examples)

    with progress.step("site means", len(batches)) as advance:
        means = dataset_means(spliced, batches, advance=advance)

    with progress.step(f"node effects ({settings.method})", len(batches) * len(sites)) as advance:
        aggregated, grads_per_batch, metric_clean, metric_patch, patches = _node_effects(
            spliced, batches, metric, settings, means, n_examples, advance
        )
    kept = _kept_nodes(aggregated, settings.node_threshold, per_position)
    with progress.step("edges", len(batches) * len(sites)) as advance:
        edge_sums = _edge_sums(spliced, batches, grads_per_batch, kept, settings, means, advance, patches)
        parents = output_parents(spliced, batches[0].clean[:1])  # wiring, the same for any example

    evaluation: list[dict[str, Any]] = []
    thresholds = sorted(set(settings.eval_thresholds))
    if thresholds:
        with progress.step("evaluation", len(thresholds) + 1) as advance:
            evaluation = evaluate(
                spliced, batches, metric, aggregated, thresholds, means, metric_model=metric_clean, advance=advance
            )

    n_pos = batches[0].n_pos if per_position else None
    nodes = _node_table(aggregated, kept, metric_clean, settings.node_threshold, n_pos)
    edges = _edge_table(
        edge_sums, kept, aggregated, parents, n_examples, settings.node_threshold, settings.edge_threshold, n_pos
    )
    manifest = _manifest(handle, dictionaries, task, settings, metric_name, evaluation)
    manifest["metric_clean"] = metric_clean
    if metric_patch is not None:
        manifest["metric_patch"] = metric_patch
    manifest["compute_seconds"] = round(time.perf_counter() - started, 3)
    manifest["device"] = str(handle.device)
    log.info("circuit %s: %d nodes, %d edges", manifest["circuit_id"], nodes.height, edges.height)
    return Circuit(manifest=manifest, nodes=nodes, edges=edges, evaluation=evaluation, effects=aggregated)


def _node_effects(spliced, batches, metric, settings: CircuitSettings, means, n_examples: int, advance):
    """Node effects of every batch, summed over examples (and over positions for ``sum``), then averaged.

    Returns the aggregated effects, each batch's metric gradients (the edges' left vectors), the mean
    clean and patch metrics (the latter None without counterfactuals), and each batch's counterfactual patch
    state where the whole task's fit in :data:`PATCH_CACHE_ELEMENTS` (else None: the edges recompute it).
    """
    per_position = settings.aggregation == "none"
    dims = (0,) if per_position else (0, 1)
    feature_sum: dict[Site, Tensor] = {}
    error_sum: dict[Site, Tensor] = {}
    grads_per_batch: list[dict[Site, Tensor]] = []
    patches: list[PatchState | None] = []
    cached = 0
    metric_clean, metric_patch = 0.0, None
    for batch in batches:
        effects, _, patch = batch_effects(
            spliced, batch, metric, method=settings.method, ig_steps=settings.ig_steps,
            ablation=settings.ablation, means=means.for_batch(batch), max_rows=settings.max_rows, advance=advance,
        )
        grads_per_batch.append(effects.grads)
        cached += sum(patch.f[s].numel() + patch.x[s].numel() for s in spliced.sites)
        patches.append(patch if batch.patch is not None and cached <= PATCH_CACHE_ELEMENTS else None)
        metric_clean += float(effects.metric_clean.sum())
        if effects.metric_patch is not None:
            metric_patch = (metric_patch or 0.0) + float(effects.metric_patch.sum())
        for s in spliced.sites:
            f, e = effects.features[s].sum(dim=dims), effects.errors[s].sum(dim=dims)
            feature_sum[s] = f if s not in feature_sum else feature_sum[s] + f
            error_sum[s] = e if s not in error_sum else error_sum[s] + e
    aggregated = AggregatedEffects(
        features={s: f / n_examples for s, f in feature_sum.items()},
        errors={s: e / n_examples for s, e in error_sum.items()},
    )
    return aggregated, grads_per_batch, metric_clean / n_examples, (
        None if metric_patch is None else metric_patch / n_examples
    ), patches


def _edge_sums(spliced, batches, grads_per_batch, kept, settings: CircuitSettings, means, advance, patches=None):
    """Edge weights between kept nodes, per pair of wired sites, summed over every example."""
    edge_sums: dict[tuple[Site, Site], Tensor] = {}
    for index, (batch, grads) in enumerate(zip(batches, grads_per_batch)):
        leaf = spliced.leaf_forward(batch.clean)
        clean = spliced.codes_of(leaf)  # the clean codes from the leaf pass, not from another forward pass
        patch = patches[index] if patches and patches[index] is not None else patch_state(
            spliced, batch, clean, ablation=settings.ablation, means=means.for_batch(batch)
        )[0]
        for block in batch_edges(
            spliced, batch.clean, grads, clean, patch, kept, per_position=settings.aggregation == "none",
            chunk=settings.edge_chunk, advance=advance, leaf=leaf,
        ):
            key = (block.up, block.down)
            edge_sums[key] = block.weights if key not in edge_sums else edge_sums[key] + block.weights
    return edge_sums


def _kept_nodes(effects: AggregatedEffects, threshold: float, per_position: bool) -> dict[Site, KeptNodes]:
    """Nodes with ``|effect| >= threshold``. Per position, a feature kept at any position is computed at
    every position; :func:`_endpoints` keeps only its kept positions."""
    kept = {}
    for site, f in effects.features.items():
        mask = f.abs() >= threshold
        error_mask = effects.errors[site].abs() >= threshold
        features = (mask.any(0) if per_position else mask).nonzero().flatten()
        kept[site] = KeptNodes(features=features, error=bool(error_mask.any()))
    return kept


@dataclass
class _Endpoints:
    """The nodes a weight-matrix axis stands for, in the order of :mod:`edges`: per position (if any),
    kept features then the error node."""

    ids: list[str]
    positions: list[int]
    effects: list[float]
    valid: list[bool]  # above the node threshold (the error column may stand for a dropped node)
    indices: list[int | None]  # the latent of a feature node, None for the error node


def _endpoints(site: Site, effects: AggregatedEffects, nodes: KeptNodes, threshold: float,
               n_pos: int | None) -> _Endpoints:
    f = effects.features[site].detach().cpu()
    e = effects.errors[site].detach().cpu()
    indices = nodes.features.cpu().tolist()
    ids = [naming.feature_id(site.name, i) for i in indices] + [naming.error_id(site.name)]
    latents: list[int | None] = [*indices, None]
    out = _Endpoints([], [], [], [], [])
    for position in range(n_pos) if n_pos is not None else [-1]:
        if n_pos is None:
            values = f[indices].tolist() + [float(e)]
        else:
            values = f[position, indices].tolist() + [float(e[position])]
        for node_id, latent, value in zip(ids, latents, values):
            out.ids.append(node_id)
            out.indices.append(latent)
            out.positions.append(position)
            out.effects.append(value)
            out.valid.append(abs(value) >= threshold)
    return out


def _node_table(effects: AggregatedEffects, kept: dict[Site, KeptNodes], metric_clean: float,
                threshold: float, n_pos: int | None) -> pl.DataFrame:
    frames = []
    for site in sorted(kept, key=lambda s: s.order):
        ends = _endpoints(site, effects, kept[site], threshold, n_pos)
        # The columns are known here, where the ids are built: nothing parses an id back.
        frame = pl.DataFrame({"node_id": ends.ids, "index": ends.indices, "position": ends.positions,
                              "effect": ends.effects, "valid": ends.valid},
                             schema_overrides={"index": pl.Int64, "position": pl.Int64, "effect": pl.Float64})
        frame = frame.with_columns(
            pl.when(pl.col("index").is_null()).then(pl.lit(naming.ERROR)).otherwise(pl.lit(naming.FEATURE))
            .alias("kind"),
            pl.lit(site.kind).alias("site"),
            pl.lit(site.layer, dtype=pl.Int64).alias("layer"),
        )
        frames.append(frame.filter(pl.col("valid")).drop("valid"))
    table = pl.concat(frames) if frames else pl.DataFrame(schema=NODE_COLUMNS)
    output = pl.DataFrame({"node_id": [naming.OUTPUT_ID], "kind": ["output"], "site": ["output"], "layer": [-1],
                           "index": [None], "position": [-1], "effect": [metric_clean]}, schema=NODE_COLUMNS)
    return pl.concat([table.select(list(NODE_COLUMNS)).cast(NODE_COLUMNS), output])


def _edge_table(
    edge_sums: dict[tuple[Site, Site], Tensor],
    kept: dict[Site, KeptNodes],
    effects: AggregatedEffects,
    parents: list[Site],
    n_examples: int,
    node_threshold: float,
    edge_threshold: float,
    n_pos: int | None,
) -> pl.DataFrame:
    frames = []
    ends = {site: _endpoints(site, effects, kept[site], node_threshold, n_pos) for site in kept}
    for (up, down), weights in sorted(edge_sums.items(), key=lambda kv: (kv[0][1].order, kv[0][0].order)):
        w = (weights / n_examples).detach().cpu()
        src, dst = ends[up], ends[down]
        valid = torch.tensor(dst.valid).unsqueeze(1) & torch.tensor(src.valid).unsqueeze(0)
        rows, cols = ((w.abs() >= edge_threshold) & valid & (w != 0)).nonzero().unbind(-1)
        rows_l, cols_l = rows.tolist(), cols.tolist()
        frames.append(pl.DataFrame({
            "src": [src.ids[c] for c in cols_l], "dst": [dst.ids[r] for r in rows_l],
            "src_position": [src.positions[c] for c in cols_l], "dst_position": [dst.positions[r] for r in rows_l],
            "weight": w[rows, cols].double().tolist(),
        }, schema=EDGE_COLUMNS))
    # the nodes that feed the logits directly: weight = their effect on the metric
    for site in parents:
        if site not in ends:
            continue
        node = ends[site]
        picks = [j for j, ok in enumerate(node.valid) if ok and abs(node.effects[j]) >= edge_threshold]
        frames.append(pl.DataFrame({
            "src": [node.ids[j] for j in picks], "dst": [naming.OUTPUT_ID] * len(picks),
            "src_position": [node.positions[j] for j in picks], "dst_position": [-1] * len(picks),
            "weight": [node.effects[j] for j in picks],
        }, schema=EDGE_COLUMNS))
    return pl.concat(frames) if frames else pl.DataFrame(schema=EDGE_COLUMNS)


def _manifest(handle: ModelHandle, dictionaries: DictionarySet, task: Task, settings: CircuitSettings,
              metric_name: str, evaluation: list[dict[str, Any]]) -> dict[str, Any]:
    manifest: dict[str, Any] = {
        "circuit_id": circuit_id(handle, dictionaries, task, settings),
        "task": task.name,
        "model": handle.model_id,
        "model_sha256": handle.weights_sha256,
        "dictionaries": {site: info.manifest_entry() for site, info in dictionaries.infos().items()},
        "method": settings.method,
    }
    if settings.method == "ig":
        manifest["ig_steps"] = settings.ig_steps
    manifest.update({
        "metric": metric_name,
        "aggregation": settings.aggregation,
        "node_floor": settings.node_threshold,
        "edge_floor": settings.edge_threshold,
        "n_examples": len(task.examples),
        "dataset_sha256": task.sha256(),
        "evaluation": [
            {k: row[k] for k in ("node_threshold", "n_nodes", "faithfulness", "completeness")} for row in evaluation
        ],
        "evaluation_ablation": "mean per position",
        "settings": settings.identity(),
        "task_source": task.source,
    })
    if not task.has_counterfactuals:
        manifest["ablation"] = settings.ablation
    return manifest


# ------------------------------------------------------------------------------------------- one call


def compute_bundle(
    *,
    model: str | ModelHandle,
    dictionaries: list[str] | tuple[str, ...] | DictionarySet,
    task: str | Task,
    out: str | Path,
    settings: CircuitSettings = CircuitSettings(),
    device: str = "auto",
    overwrite: bool = False,
    progress: Progress | None = None,
) -> Bundle:
    """Load what the specs name, compute the circuit and write it to ``out``; returns the written bundle.

    ``compute_bundle(model="toy-zoo", dictionaries=["toy-zoo"], task="ioi", out="bundles/ioi")`` is the
    whole of ``sfc ingest compute --model toy-zoo --dict toy-zoo --task ioi --out bundles/ioi``.
    """
    out = check_bundle_destination(out, overwrite=overwrite)  # before any work: never fail only at the end
    handle = model if isinstance(model, ModelHandle) else load_model(model, device=device)
    dict_set = dictionaries if isinstance(dictionaries, DictionarySet) else load_dictionary_set(
        list(dictionaries), n_layers=handle.n_layers, d_model=handle.d_model, model_id=handle.model_id
    )
    task_obj = task if isinstance(task, Task) else load_task(task)
    circuit = compute_circuit(handle, dict_set, task_obj, settings, progress=progress)
    return circuit.write(out, overwrite=overwrite)
