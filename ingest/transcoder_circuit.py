"""Transcoder circuits: the paper's path search on one prompt, written as a circuit bundle (method
``transcoder-paths``).

Nodes are transcoder features (``mlp_L/i``), attention heads (``attn_L/hH``, at the position they write to),
input tokens (``token/T``), transcoder error nodes (``mlp_L/err``) and, when the search starts from the logit
difference, the ``output``. An edge ``u → d`` is ``u``'s contribution to ``d``'s target (see
:mod:`ingest.transcoder_attribution`): ``weight`` is that input-dependent contribution, ``weight_invariant``
the input-invariant factor of it (the pullback ``W_dec[i] · enc_read[:, j]``, the OV term through the heads
on the path, or the de-embedding ``W_E[t] · …``; null out of heads and error nodes, which have none), and the
node column ``activation`` holds ``z_i`` for features and 1 for tokens, so that for a feature edge into a
feature ``weight = activation × weight_invariant / s`` with ``s`` the frozen LayerNorm scale.

A node's ``effect`` is, for the root, its value (the logit difference or the feature's pre-activation), and for
every other node its largest contribution (by ``|·|``) to a node of the circuit — the paper's path attribution.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import asdict, dataclass
from typing import Any

import polars as pl

from sfc_graph import naming
from sfc_graph.bundle import Bundle, write_bundle
from sfc_graph.errors import ComputeError

from .dictionaries import DictionarySet
from .model import ModelHandle
from .tasks import Task, tokenize_task
from .transcoder_attribution import (
    PathSettings,
    Step,
    Target,
    decompose,
    feature_target,
    greedy_paths,
    logit_diff_target,
    run_trace,
)
from .transcoder_model import LN_CONVENTION, TranscoderModel

log = logging.getLogger(__name__)

METHOD = "transcoder-paths"
LOGIT_DIFF = "logit-diff"
_ROOT_RE = re.compile(r"^mlp_(\d+)/(\d+)(?:@(-?\d+))?$")


@dataclass(frozen=True)
class TranscoderCircuitSettings:
    """The search (see :class:`PathSettings`), which prompt, and where it starts."""

    num_iters: int = 3
    num_branches: int = 5
    ignore_bos: bool = True
    cap: bool = True
    include_errors: bool = True
    example: int = 0  # which example of the task (0-based)
    root: str = LOGIT_DIFF  # logit-diff, or a transcoder feature mlp_L/i[@position] (default position: last)

    def paths(self) -> PathSettings:
        return PathSettings(num_iters=self.num_iters, num_branches=self.num_branches, ignore_bos=self.ignore_bos,
                            cap=self.cap, include_errors=self.include_errors)


@dataclass
class TranscoderCircuit:
    manifest: dict[str, Any]
    nodes: pl.DataFrame
    edges: pl.DataFrame

    @property
    def circuit_id(self) -> str:
        return self.manifest["circuit_id"]

    def write(self, out_dir, *, overwrite: bool = False) -> Bundle:
        return write_bundle(out_dir, self.manifest, self.nodes, self.edges, overwrite=overwrite)


def root_target(tm: TranscoderModel, trace, spec: str, answer: int | None, wrong: int | None) -> Target:
    """Parse ``--root``: ``logit-diff`` or ``mlp_L/i[@position]``."""
    last = len(trace.tokens) - 1
    if spec == LOGIT_DIFF:
        if answer is None:
            raise ComputeError("the logit-difference root needs an example with an answer")
        return logit_diff_target(tm, trace, answer, wrong, last)
    match = _ROOT_RE.match(spec)
    if not match:
        raise ComputeError(f"--root {spec!r}: expected {LOGIT_DIFF} or a transcoder feature mlp_L/i[@position]")
    layer, index = int(match.group(1)), int(match.group(2))
    position = int(match.group(3)) if match.group(3) is not None else last
    if position < 0:
        position += len(trace.tokens)
    return feature_target(tm, trace, layer, index, position)


def compute_transcoder_circuit(handle: ModelHandle, dictionaries: DictionarySet, task: Task,
                               settings: TranscoderCircuitSettings = TranscoderCircuitSettings()) -> TranscoderCircuit:
    """Run the path search on example ``settings.example`` of ``task`` and build the bundle's tables."""
    tm = TranscoderModel(handle, dictionaries)
    if not 0 <= settings.example < len(task.examples):
        raise ComputeError(f"--example {settings.example}: task {task.name} has {len(task.examples)} examples "
                           f"(0..{len(task.examples) - 1})")
    one = Task(task.name, (task.examples[settings.example],), task.source)
    tokenized = tokenize_task(one, handle)
    tokens = tokenized.clean[0]
    answer = tokenized.clean_answer[0]
    wrong = tokenized.patch_answer[0] if tokenized.patch_answer is not None else None
    trace = run_trace(tm, tokens)
    root = root_target(tm, trace, settings.root, answer, wrong)
    paths = greedy_paths(tm, trace, root, settings.paths())
    log.info("path search on %r from %s: %d levels of paths", one.examples[0].clean, settings.root, len(paths))
    nodes, edges = paths_to_tables(tm, trace, paths)
    terms = decompose(tm, trace, root)
    by_kind: dict[str, float] = {}
    for term in terms:
        by_kind[term.kind] = by_kind.get(term.kind, 0.0) + term.value
    transcoder_sites = {f"mlp_{layer}": tm.infos[layer].manifest_entry() for layer in range(tm.n_layers)}
    payload = {
        "model": handle.model_id, "model_sha256": handle.weights_sha256,
        "dictionaries": {s: {"id": e["id"], "sha256": e["sha256"]} for s, e in transcoder_sites.items()},
        "example": one.examples[0].to_json(), "settings": asdict(settings),
    }
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", task.name).strip("-") or "task"
    manifest = {
        "circuit_id": f"{name}.{METHOD}.{digest[:20]}",
        "task": task.name,
        "model": handle.model_id,
        "dictionaries": transcoder_sites,
        "method": METHOD,
        "metric": "logit_diff" if root.kind == "output" else f"pre_activation:{settings.root}",
        "aggregation": "none",
        "node_floor": 0.0,
        "edge_floor": 0.0,
        "n_examples": 1,
        "dataset_sha256": one.sha256(),
        "evaluation": [],
        "transcoder_paths": {
            **asdict(settings),
            "prompt": one.examples[0].clean,
            "tokens": tokens,
            "token_texts": [tm.token_text(t) for t in tokens],
            "root_target": {"kind": root.kind, "layer": root.layer, "index": root.index, "position": root.position,
                     "value": root.value},
            "root_decomposition": by_kind,
            "layernorm": LN_CONVENTION,
            "n_paths": sum(len(level) for level in paths),
        },
    }
    return TranscoderCircuit(manifest=manifest, nodes=nodes, edges=edges)


def _node_id(step: Step) -> str:
    if step.kind == "feature":
        return naming.feature_id(f"mlp_{step.layer}", step.index)
    if step.kind == "head":
        return naming.head_id(step.layer, step.index)
    if step.kind == "token":
        return naming.token_id(step.index)
    if step.kind == "error":
        return naming.error_id(f"mlp_{step.layer}")
    return naming.OUTPUT_ID


def _site(step: Step) -> tuple[str, int, int | None]:
    """(site, layer, index) columns of a step."""
    return {
        "feature": ("mlp", step.layer, step.index),
        "head": ("attn", step.layer, step.index),
        "token": ("embed", -1, step.index),
        "error": ("mlp", step.layer, None),
        "output": ("output", -1, None),
    }[step.kind]


def paths_to_tables(tm: TranscoderModel, trace, paths: list[list[list[Step]]]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The union of every kept path as node and edge tables (an edge found twice keeps its larger |weight|)."""
    nodes: dict[tuple[str, int], dict[str, Any]] = {}
    edges: dict[tuple[str, int, str, int], dict[str, Any]] = {}

    def add_node(step: Step, effect: float | None) -> tuple[str, int]:
        key = (_node_id(step), step.position)
        site, layer, index = _site(step)
        row = nodes.get(key)
        if row is None:
            row = nodes[key] = {
                "node_id": key[0], "kind": step.kind, "site": site, "layer": layer, "index": index,
                "position": step.position, "effect": 0.0, "activation": step.activation,
                "text": tm.token_text(step.index) if step.kind == "token" else None,
            }
        if effect is not None and abs(effect) > abs(row["effect"]):
            row["effect"] = effect
        return key

    for level in paths:
        for path in level:
            root = path[0]
            add_node(root, root.contribution)
            for parent, child in zip(path, path[1:]):
                dst = add_node(parent, None)
                src = add_node(child, child.contribution)
                key = (src[0], src[1], dst[0], dst[1])
                if key not in edges or abs(child.contribution) > abs(edges[key]["weight"]):
                    edges[key] = {"src": src[0], "dst": dst[0], "src_position": src[1], "dst_position": dst[1],
                                  "weight": child.contribution, "weight_invariant": child.invariant}
    node_schema = {"node_id": pl.String, "kind": pl.String, "site": pl.String, "layer": pl.Int64,
                   "index": pl.Int64, "position": pl.Int64, "effect": pl.Float64, "activation": pl.Float64,
                   "text": pl.String}
    edge_schema = {"src": pl.String, "dst": pl.String, "src_position": pl.Int64, "dst_position": pl.Int64,
                   "weight": pl.Float64, "weight_invariant": pl.Float64}
    node_frame = pl.DataFrame(list(nodes.values()), schema=node_schema) if nodes else pl.DataFrame(schema=node_schema)
    edge_frame = pl.DataFrame(list(edges.values()), schema=edge_schema) if edges else pl.DataFrame(schema=edge_schema)
    return node_frame.sort("layer", "node_id", "position"), edge_frame
