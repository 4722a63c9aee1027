"""Circuits saved by the sparse-feature-circuits reference implementation (saprmarks/feature-circuits).

Its ``circuit.py`` saves ``torch.save({"examples": …, "nodes": …, "edges": …})``:

- ``nodes[site]`` for ``site`` in ``embed``, ``attn_L``, ``mlp_L``, ``resid_L``: a ``SparseAct`` (its
  ``activation_utils`` class) whose ``act`` holds the node effects over the dictionary and ``resc`` the effect
  of the SAE error term — ``[d]`` / ``[1]`` for a summed circuit, ``[seq, d]`` / ``[seq, 1]`` per position;
  ``nodes["y"]`` (the total effect) when the file has it.
- ``edges[upstream][downstream]``: a sparse COO tensor ``[d_down + 1, d_up + 1]`` (the last index of each
  side is the error node), ``[s_down, d_down + 1, s_up, d_up + 1]`` per position;
  ``edges[last resid]["y"]``: ``[d + 1]`` (or ``[seq, d + 1]``), the edges into the output.

The file is a pickle, and unpickling runs whatever the file names. It is read with torch's restricted
(``weights_only``) unpickler, which builds only tensors and plain containers; ``SparseAct`` is let in as an
inert record of its three fields (never the original class, whose code we do not have and would not run).
Anything else in the file — a function, another class — is refused with one sentence.
"""

from __future__ import annotations

import hashlib
import math
import os
import pickle
import re
from pathlib import Path
from typing import Any

import polars as pl

from .. import naming
from ..bundle import EDGE_COLUMNS, NODE_COLUMNS, Bundle, write_bundle
from ..errors import InteropError

# Where the reference implementation's SparseAct class has lived (the pickle names it by module path).
SPARSE_ACT_NAMES = (
    "activation_utils.SparseAct",
    "feature_circuits.activation_utils.SparseAct",
    "dictionary_learning.activation_utils.SparseAct",
)
OUTPUT_KEY = "y"
_SITE = re.compile(r"^(embed|(attn|mlp|resid)_\d+)$")


class SparseActRecord:
    """The fields of a pickled ``SparseAct`` (``act``, ``res``, ``resc``), and nothing else: no methods run."""

    act: Any = None
    res: Any = None
    resc: Any = None

    def __setstate__(self, state: dict[str, Any]) -> None:
        for key in ("act", "res", "resc"):
            setattr(self, key, state.get(key))


def load_reference_circuit(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Unpickle a reference ``.pt`` circuit with the restricted unpickler (see the module docstring)."""
    import torch

    file = Path(path)
    if not file.is_file():
        raise InteropError(f"{file}: no such file")
    allowed = [(SparseActRecord, name) for name in SPARSE_ACT_NAMES]
    try:
        with torch.serialization.safe_globals(allowed):
            data = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if not found:  # torch wraps every unpickling failure, damaged files included, in this type
            raise InteropError(f"{file}: not a readable torch file ({_first_line(exc)})") from None
        raise InteropError(
            f"{file}: refused: it names {found.group(1)}, which is not a tensor, a container or SparseAct; a reference circuit "
            "file holds nothing else, and loading other objects could run code"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise InteropError(f"{file}: not a readable torch file ({_first_line(exc)})") from None
    if not isinstance(data, dict) or not isinstance(data.get("nodes"), dict) or not isinstance(data.get("edges"), dict):
        raise InteropError(f"{file}: not a reference circuit (expected a dict with 'nodes' and 'edges')")
    return data


def import_reference_circuit(
    data: dict[str, Any],
    *,
    model: str,
    task: str,
    source: str = "circuit.pt",
    dictionaries: dict[str, str] | None = None,
    metric: str = "logit_diff",
    file_sha256: str | None = None,
) -> tuple[dict[str, Any], pl.DataFrame, pl.DataFrame]:
    """A reference circuit as a bundle's ``(manifest, nodes, edges)``.

    Nodes: every latent and error term with a non-zero effect, and every endpoint of a non-zero edge.
    ``dictionaries`` maps site names to dictionary ids (default ``<model>/<site>``): circuits over the same
    dictionaries then share features in the store. The output node's effect is ``nodes["y"]`` when the file
    has it, else the summed effect of the last residual stream's nodes (patching all of the last residual
    stream is patching the output's only input).
    """
    dictionaries = dict(dictionaries or {})
    raw_nodes: dict[str, Any] = data["nodes"]
    sites = [s for s in raw_nodes if s != OUTPUT_KEY]
    bad = [s for s in sites if not _SITE.match(str(s))]
    if bad:
        raise InteropError(f"{source}: node site {bad[0]!r} is not embed, attn_L, mlp_L or resid_L")
    effects = {site: _site_effects(raw_nodes[site], site, source) for site in sites}
    positional = {a.dim() == 2 for a, _ in effects.values()}
    if len(positional) > 1:
        raise InteropError(f"{source}: some sites are summed over positions and others are not")
    per_position = positional.pop() if positional else False
    widths = {site: int(act.shape[-1]) for site, (act, _) in effects.items()}

    rows: dict[tuple[str, int], float] = {}

    def effect_of(site: str, latent: int, position: int) -> float:
        act, resc = effects[site]
        table = resc if latent == widths[site] else act
        column = 0 if latent == widths[site] else latent
        return float(table[position, column] if per_position else table[column])  # position -1: summed

    def node_of(site: str, latent: int) -> str:
        return naming.error_id(site) if latent == widths[site] else naming.feature_id(site, latent)

    for site, (act, resc) in effects.items():
        for table, is_error in ((act, False), (resc, True)):
            for idx in (table != 0).nonzero().tolist():
                position = idx[0] if per_position else -1
                latent = widths[site] if is_error else idx[-1]
                rows[(node_of(site, latent), position)] = effect_of(site, latent, position)

    last_resid = max((s for s in sites if s.startswith("resid_")), key=lambda s: naming.parse_site_name(s)[1],
                     default=None)
    # The metric is read at the last position: a per-position circuit's output node sits there.
    output_position = int(next(iter(effects.values()))[0].shape[0]) - 1 if per_position and effects else -1
    edges: list[dict[str, Any]] = []
    raw_edges: dict[str, Any] = data["edges"]
    for upstream, targets in raw_edges.items():
        if upstream not in effects:
            raise InteropError(f"{source}: edges start at {upstream!r}, which has no node effects in the file")
        if not isinstance(targets, dict):
            raise InteropError(f"{source}: edges[{upstream!r}] must map downstream sites to tensors")
        for downstream, tensor in targets.items():
            edges += _site_edges(tensor, upstream, downstream, widths, per_position, output_position, node_of,
                                 source)
    for edge in edges:
        for end in ("src", "dst"):
            key = (edge[end], edge[f"{end}_position"])
            if key not in rows and edge[end] != naming.OUTPUT_ID:
                site = naming.prefix_of(edge[end])
                name = naming.parse_node_id(edge[end])
                latent = widths[site] if name.kind == naming.ERROR or name.index is None else name.index
                rows[key] = effect_of(site, latent, key[1])

    if OUTPUT_KEY in raw_nodes and _as_tensor(raw_nodes[OUTPUT_KEY]) is not None:
        output_effect = float(_as_tensor(raw_nodes[OUTPUT_KEY]).float().mean())
    elif last_resid is not None:
        act, resc = effects[last_resid]
        output_effect = float(act.sum() + resc.sum())
    else:
        output_effect = 0.0
    if not math.isfinite(output_effect):
        raise InteropError(f"{source}: the output effect is not a finite number")

    node_rows = [
        {**_columns(node), "node_id": node, "position": position, "effect": effect}
        for (node, position), effect in rows.items()
    ]
    node_rows.append({"node_id": naming.OUTPUT_ID, "kind": naming.OUTPUT, "site": "output", "layer": -1,
                      "index": None, "position": output_position, "effect": output_effect})
    nodes = pl.DataFrame(node_rows, schema=NODE_COLUMNS)
    bad_effect = nodes.filter(~pl.col("effect").is_finite())
    if bad_effect.height:
        raise InteropError(f"{source}: node {bad_effect['node_id'][0]!r} has a non-finite effect")
    edge_frame = pl.DataFrame(edges, schema=EDGE_COLUMNS)

    digest = file_sha256 or hashlib.sha256(repr(sorted(rows.items())).encode()).hexdigest()
    examples = data.get("examples")
    manifest = {
        "circuit_id": f"{re.sub(r'[^A-Za-z0-9_-]+', '-', task).strip('-') or 'task'}.feature-circuits.{digest[:16]}",
        "task": task,
        "model": model,
        "dictionaries": {
            site: {"id": dictionaries.get(site, f"{model}/{site}"), "kind": "sae", "d_dict": widths[site]}
            for site in sites
        },
        "method": "feature-circuits",
        "metric": metric,
        "aggregation": "none" if per_position else "sum",
        "node_floor": 0.0,
        "edge_floor": 0.0,
        "n_examples": len(examples) if isinstance(examples, (list, tuple)) else None,
        "dataset_sha256": digest,
        "imported_from": {"format": "feature-circuits .pt", "source": source},
    }
    return manifest, nodes, edge_frame


def import_reference_file(
    path: str | os.PathLike[str], out_dir: str | os.PathLike[str], *, model: str, task: str,
    dictionaries: dict[str, str] | None = None, metric: str = "logit_diff", overwrite: bool = False,
) -> Bundle:
    """Read a reference ``.pt`` circuit and write it as a bundle in ``out_dir``."""
    file = Path(path)
    data = load_reference_circuit(file)
    digest = hashlib.sha256(file.read_bytes()).hexdigest()
    manifest, nodes, edges = import_reference_circuit(
        data, model=model, task=task, source=str(file), dictionaries=dictionaries, metric=metric, file_sha256=digest
    )
    return write_bundle(out_dir, manifest, nodes, edges, overwrite=overwrite)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    # torch prefixes every weights-only failure with advice about torch.load; the cause is after this marker
    cause = re.search(r"WeightsUnpickler error:\s*([^\n]+)", text)
    if cause:
        return cause.group(1).strip()[:160]
    return text.splitlines()[0][:160] if text else type(exc).__name__


def _as_tensor(value: Any):
    import torch

    if isinstance(value, torch.Tensor):
        return value.to_dense() if value.is_sparse else value
    return None


def _site_effects(value: Any, site: str, source: str):
    act = _as_tensor(getattr(value, "act", None))
    resc = _as_tensor(getattr(value, "resc", None))
    if act is None:
        raise InteropError(f"{source}: nodes[{site!r}] has no 'act' tensor of node effects")
    act = act.detach().double()
    if act.dim() not in (1, 2):
        raise InteropError(f"{source}: nodes[{site!r}].act has shape {tuple(act.shape)}; expected [d] or [seq, d]")
    if resc is None:
        resc = act.new_zeros(act.shape[:-1] + (1,))
    resc = resc.detach().double().reshape(act.shape[:-1] + (1,))
    if not (act.isfinite().all() and resc.isfinite().all()):
        raise InteropError(f"{source}: nodes[{site!r}] holds non-finite effects")
    return act, resc


def _site_edges(tensor: Any, upstream: str, downstream: str, widths: dict[str, int], per_position: bool,
                output_position: int, node_of, source: str) -> list[dict[str, Any]]:
    import torch

    if not isinstance(tensor, torch.Tensor):
        raise InteropError(f"{source}: edges[{upstream!r}][{downstream!r}] is not a tensor")
    sparse = tensor.coalesce() if tensor.is_sparse else tensor.to_sparse().coalesce()
    indices, values = sparse.indices().t().tolist(), sparse.values().double().tolist()
    d_up = widths[upstream] + 1
    where = f"{source}: edges[{upstream!r}][{downstream!r}]"
    rows = []
    if downstream == OUTPUT_KEY:
        expected = 2 if per_position else 1
        if sparse.dim() != expected or sparse.shape[-1] != d_up:
            raise InteropError(f"{where} has shape {tuple(sparse.shape)}; expected "
                               f"{'[seq, ' if per_position else '['}{d_up}]")
        for idx, weight in zip(indices, values):
            position = idx[0] if per_position else -1
            rows.append(_edge(node_of(upstream, idx[-1]), position, naming.OUTPUT_ID, output_position, weight, where))
        return [r for r in rows if r]
    if downstream not in widths:
        raise InteropError(f"{where}: {downstream!r} has no node effects in the file")
    d_down = widths[downstream] + 1
    if per_position:
        ok = sparse.dim() == 4 and sparse.shape[1] == d_down and sparse.shape[3] == d_up
    else:
        ok = sparse.dim() == 2 and tuple(sparse.shape) == (d_down, d_up)
    if not ok:
        layout = f"[s_down, {d_down}, s_up, {d_up}]" if per_position else f"[{d_down}, {d_up}]"
        raise InteropError(f"{where} has shape {tuple(sparse.shape)}; expected {layout}")
    for idx, weight in zip(indices, values):
        if per_position:
            dst_pos, dst_latent, src_pos, src_latent = idx
        else:
            (dst_latent, src_latent), dst_pos, src_pos = idx, -1, -1
        rows.append(_edge(node_of(upstream, src_latent), src_pos, node_of(downstream, dst_latent), dst_pos,
                          weight, where))
    return [r for r in rows if r]


def _edge(src: str, src_pos: int, dst: str, dst_pos: int, weight: float, where: str) -> dict[str, Any] | None:
    if weight == 0.0:
        return None
    if not math.isfinite(weight):
        raise InteropError(f"{where}: edge {src} -> {dst} has a non-finite weight")
    return {"src": src, "dst": dst, "src_position": src_pos, "dst_position": dst_pos, "weight": weight}


def _columns(node: str) -> dict[str, Any]:
    name = naming.parse_node_id(node)
    return {"kind": name.kind, "site": name.site, "layer": name.layer, "index": name.index}


__all__ = ["SPARSE_ACT_NAMES", "import_reference_circuit", "import_reference_file", "load_reference_circuit"]
