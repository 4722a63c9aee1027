"""The toy model zoo: a small language model trained on the paper's tasks, with dictionaries for every site.

No model weights can be downloaded on the project's machines, so the zoo ships its own:
a word-level tokenizer, a ``HookedTransformer``, an SAE per site (``embed``, ``attn_L``, ``mlp_L``,
``resid_L``) and a transcoder per MLP in the SAELens on-disk format, tasks as counterfactual pairs (each
with a ``template`` id), bios for SHIFT-style experiments, a text stream labelled with the mechanism behind
each token, and a card of held-out figures. Everything lives under :func:`zoo_dir` and is found without
network access. The data contract is /work/notes/ZOO_V2_CONTRACT.md (mirrored in the README).

>>> from sfc_graph import zoo
>>> zoo.ZOO_NAME
'toy-zoo-v2'
>>> "ioi" in zoo.task_names()
True

Importing this module does not import torch; the loaders do.
"""

from __future__ import annotations

import json
import warnings
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from sfc_graph.errors import SfcError, ZooError
from sfc_graph.sites import all_sites, parse_site

from .grammar import BEHAVIOURS, TASKS

if TYPE_CHECKING:
    from transformer_lens import HookedTransformer
    from transformers import PreTrainedTokenizerFast

ZOO_NAME = "toy-zoo-v2"
TASK_NAMES = TASKS
SPLITS = ("test", "train")
BIOS = ("ambiguous", "balanced", "professions")

__all__ = [
    "BEHAVIOURS",
    "BIOS",
    "ZOO_NAME",
    "dictionary_path",
    "load_bios",
    "load_card",
    "load_stream",
    "load_model",
    "load_tokenizer",
    "site_names",
    "task_names",
    "task_path",
    "transcoder_path",
    "zoo_dir",
]


def zoo_dir() -> Path:
    """The directory of the shipped artefacts (``tokenizer.json``, ``model/``, ``dictionaries/`` …)."""
    path = Path(str(resources.files(__package__).joinpath("artifacts", ZOO_NAME)))
    if not (path / "model" / "config.json").is_file():
        raise ZooError(f"the zoo's artefacts are missing from {path}; rebuild them with `sfc zoo build --out {path}`")
    return path


def _root(root: str | Path | None) -> Path:
    return Path(root) if root is not None else zoo_dir()


def load_tokenizer(root: str | Path | None = None) -> PreTrainedTokenizerFast:
    """The zoo's tokenizer as a ``PreTrainedTokenizerFast``; it prepends ``<bos>`` (like Llama's)."""
    from .tokenizer import hf_tokenizer

    path = _root(root) / "tokenizer.json"
    if not path.is_file():
        raise ZooError(f"no tokenizer.json in {path.parent}")
    return hf_tokenizer(path)


def _model_config(root: Path) -> dict:
    path = root / "model" / "config.json"
    if not path.is_file():
        raise ZooError(f"no model/config.json in {root}")
    return json.loads(path.read_text())


def load_model(device: str = "cpu", root: str | Path | None = None) -> HookedTransformer:
    """The zoo's model in eval mode, tokenizer attached (``model.to_tokens(text)`` prepends ``<bos>``)."""
    import torch
    from safetensors.torch import load_file
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    root = _root(root)
    cfg = HookedTransformerConfig(**{**_model_config(root), "device": device})
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        # initialisation draws from the global RNG: fork it. HookedTransformer's deprecation notice is
        # known and chosen (pyproject.toml: transformer-lens 3.9 pinned).
        warnings.filterwarnings("ignore", message="HookedTransformer is deprecated", category=DeprecationWarning)
        model = HookedTransformer(cfg, tokenizer=load_tokenizer(root), move_to_device=False)
    state = load_file(str(root / "model" / "model.safetensors"))
    model.load_state_dict(state, strict=True)
    return model.to(device, print_details=False).eval()


def site_names(root: str | Path | None = None) -> list[str]:
    """Every site with a dictionary, in forward order: ``embed``, ``attn_0``, ``mlp_0``, ``resid_0``, …"""
    return [site.name for site in all_sites(int(_model_config(_root(root))["n_layers"]))]


def dictionary_path(site: str, root: str | Path | None = None) -> Path:
    """The SAELens-format directory (``cfg.json`` + ``sae_weights.safetensors``) of ``site``'s SAE."""
    root = _root(root)
    try:
        name = parse_site(site).name
    except SfcError:
        name = None
    path = root / "dictionaries" / (name or site)
    if name is None or name == "output" or not (path / "cfg.json").is_file():
        raise ZooError(f"the zoo has no dictionary for site {site!r}; its sites are {', '.join(site_names(root))}")
    return path


def transcoder_path(layer: int, root: str | Path | None = None) -> Path:
    """The SAELens-format directory of the transcoder that replaces MLP ``layer``."""
    root = _root(root)
    path = root / "transcoders" / f"mlp_{layer}"
    if not isinstance(layer, int) or layer < 0 or not (path / "cfg.json").is_file():
        n_layers = int(_model_config(root)["n_layers"])
        raise ZooError(f"the zoo has no transcoder for layer {layer!r}; its layers are 0..{n_layers - 1}")
    return path


def task_names(root: str | Path | None = None) -> list[str]:
    """The zoo's tasks: the four agreement variants, ``ioi``, ``greater_than`` and ``copy`` (those present
    in the zoo at ``root``; the default zoo has them all)."""
    if root is None:
        try:
            root = zoo_dir()
        except ZooError:
            return list(TASK_NAMES)
    return [name for name in TASK_NAMES if (Path(root) / "tasks" / name).is_dir()] or list(TASK_NAMES)


def task_path(name: str, split: str = "test", root: str | Path | None = None) -> Path:
    """The JSONL file of ``name``'s ``split`` (``test``: held out; ``train``: pairs for fitting)."""
    if name not in TASK_NAMES:
        raise ZooError(f"the zoo has no task {name!r}; its tasks are {', '.join(TASK_NAMES)}")
    if split not in SPLITS:
        raise ZooError(f"a task split is 'test' or 'train', not {split!r}")
    path = _root(root) / "tasks" / name / f"{split}.jsonl"
    if not path.is_file():
        raise ZooError(f"the zoo's task file {path} is missing")
    return path


def load_card(root: str | Path | None = None) -> dict:
    """The zoo card (``card.json``): architecture, training, per-task and per-dictionary figures."""
    path = _root(root) / "card.json"
    if not path.is_file():
        raise ZooError(f"no card.json in {path.parent}")
    return json.loads(path.read_text())


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise ZooError(f"the zoo's data file {path} is missing")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def load_bios(name: str, root: str | Path | None = None) -> list[dict]:
    """One bios file: ``{"text", "profession", "gender", "split"}`` per bio.

    ``ambiguous``: professor/nurse with gender perfectly correlated; ``balanced``: the same professions,
    gender independent; ``professions``: five professions, gender independent.
    """
    if name not in BIOS:
        raise ZooError(f"the zoo has no bios {name!r}; its bios are {', '.join(BIOS)}")
    return _read_jsonl(_root(root) / "bios" / f"{name}.jsonl")


def load_stream(root: str | Path | None = None) -> list[dict]:
    """The labelled text stream: ``{"doc", "tokens", "labels"}`` per document, one label per token, each
    label one of :data:`BEHAVIOURS` (the planted mechanism that decides the token given those before it)."""
    return _read_jsonl(_root(root) / "stream.jsonl")
