"""Dictionaries (SAEs and transcoders) attached to sites, and their on-disk formats.

Every dictionary here has an affine decoder ``x̂ = f @ W_dec + b_dec``; only the encoder differs by
architecture. The attribution code relies on that: the gradient of the metric with respect to a feature
is ``W_dec[i] · ∂m/∂x``, and interpolating codes is interpolating activations.

Formats read:

* SAELens on disk: a directory with ``cfg.json`` and ``sae_weights.safetensors`` (the toy zoo uses it);
* dictionary_learning (the paper's code): a directory with ``ae.pt`` and ``config.json``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from sfc_graph.errors import DictionaryError
from sfc_graph.sites import Site

log = logging.getLogger(__name__)


class Dictionary:
    """An SAE: ``f = act(pre(x))`` with ``pre(x) = (x - b_dec·apply_b_dec_to_input) @ W_enc + b_enc``."""

    architecture: ClassVar[str] = "standard"
    kind: ClassVar[str] = "sae"

    def __init__(
        self,
        W_enc: Tensor,
        b_enc: Tensor,
        W_dec: Tensor,
        b_dec: Tensor,
        *,
        apply_b_dec_to_input: bool = True,
        input_hook: str | None = None,
        **extra: Any,
    ) -> None:
        self.W_enc, self.b_enc, self.W_dec, self.b_dec = W_enc, b_enc, W_dec, b_dec
        self.apply_b_dec_to_input = apply_b_dec_to_input
        # None: reads the site's own activation. Transcoders read another hook (the MLP input).
        self.input_hook = input_hook
        self.extra = extra

    @property
    def d_in(self) -> int:
        return self.W_enc.shape[0]

    @property
    def d_dict(self) -> int:
        return self.W_enc.shape[1]

    def tensors(self) -> dict[str, Tensor]:
        return {"W_enc": self.W_enc, "b_enc": self.b_enc, "W_dec": self.W_dec, "b_dec": self.b_dec}

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Dictionary:
        for name, tensor in self.tensors().items():
            setattr(self, name, tensor.to(device=device, dtype=dtype or tensor.dtype))
        return self

    def pre(self, x: Tensor) -> Tensor:
        if self.apply_b_dec_to_input:
            x = x - self.b_dec
        return x @ self.W_enc + self.b_enc

    def activation(self, pre: Tensor) -> Tensor:
        return torch.relu(pre)

    def encode(self, x: Tensor) -> Tensor:
        """Sparse codes ``[..., d_dict]`` of activations ``[..., d_in]``."""
        return self.activation(self.pre(x))

    def decode(self, f: Tensor) -> Tensor:
        return f @ self.W_dec + self.b_dec

    def check_shapes(self, *, where: str, d_model: int) -> None:
        """Refuse weights that do not fit each other or the site, in one sentence."""
        d_in, d_dict = self.W_enc.shape if self.W_enc.ndim == 2 else (None, None)
        expected = {
            "W_enc": (d_model, d_dict),
            "b_enc": (d_dict,),
            "W_dec": (d_dict, d_model),
            "b_dec": (d_model,),
        }
        for name, tensor in Dictionary.tensors(self).items():
            if tuple(tensor.shape) != expected[name]:
                raise DictionaryError(
                    f"{where}: {name} has shape {list(tensor.shape)} but the site has d_model={d_model}, "
                    f"so expected {list(expected[name])} (W_enc {list(self.W_enc.shape)}, W_dec {list(self.W_dec.shape)})"
                )
        if d_in != d_model:
            raise DictionaryError(f"{where}: W_enc reads {d_in} dimensions but the site has d_model={d_model}")


class JumpReLUDictionary(Dictionary):
    """``f = pre · [pre > threshold]`` (Rajamanoharan et al. 2024)."""

    architecture = "jumprelu"

    def __init__(self, *args: Any, threshold: Tensor, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.threshold = threshold

    def tensors(self) -> dict[str, Tensor]:
        return {**super().tensors(), "threshold": self.threshold}

    def activation(self, pre: Tensor) -> Tensor:
        return pre * (pre > self.threshold) * (pre > 0)

    def check_shapes(self, *, where: str, d_model: int) -> None:
        super().check_shapes(where=where, d_model=d_model)
        threshold = self.threshold
        if tuple(threshold.shape) not in ((), (self.d_dict,)):
            raise DictionaryError(
                f"{where}: threshold has shape {list(threshold.shape)}, expected [] or [{self.d_dict}]"
            )


class TopKDictionary(Dictionary):
    """Keep the ``k`` largest pre-activations per token (after ReLU) (Gao et al. 2024)."""

    architecture = "topk"

    def __init__(self, *args: Any, k: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.k = int(k)

    def activation(self, pre: Tensor) -> Tensor:
        k = min(self.k, pre.shape[-1])
        values, indices = pre.topk(k, dim=-1)
        return torch.zeros_like(pre).scatter(-1, indices, torch.relu(values))


class Transcoder(Dictionary):
    """Reads the MLP's input (``input_hook``) and predicts its output at the ``mlp_L`` site (Dunefsky et al.)."""

    architecture = "transcoder"
    kind = "transcoder"

    def check_shapes(self, *, where: str, d_model: int) -> None:
        if self.W_enc.ndim != 2 or self.W_dec.ndim != 2 or self.W_dec.shape[-1] != d_model:
            raise DictionaryError(
                f"{where}: W_dec has shape {list(self.W_dec.shape)} but the site has d_model={d_model}"
            )
        if self.W_enc.shape[1] != self.W_dec.shape[0]:
            raise DictionaryError(
                f"{where}: W_enc {list(self.W_enc.shape)} and W_dec {list(self.W_dec.shape)} disagree on d_dict"
            )


# an architecture name (SAELens `architecture`, dictionary_learning `dict_class`) -> class
ARCHITECTURES: dict[str, type[Dictionary]] = {
    "standard": Dictionary,
    "relu": Dictionary,
    "AutoEncoder": Dictionary,
    "jumprelu": JumpReLUDictionary,
    "JumpReluAutoEncoder": JumpReLUDictionary,
    "topk": TopKDictionary,
    "AutoEncoderTopK": TopKDictionary,
    "transcoder": Transcoder,
}


@dataclass(frozen=True)
class DictionaryInfo:
    """What the bundle manifest records about a dictionary."""

    id: str
    kind: str
    architecture: str
    d_dict: int
    sha256: str
    path: str

    def manifest_entry(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "architecture": self.architecture, "d_dict": self.d_dict,
                "sha256": self.sha256}


@dataclass
class LoadedDictionary:
    site: Site
    dictionary: Dictionary
    info: DictionaryInfo


@dataclass
class DictionarySet:
    """One dictionary per site (sites without one are not nodes of the circuit)."""

    by_site: dict[Site, LoadedDictionary] = field(default_factory=dict)

    @property
    def sites(self) -> list[Site]:
        return sorted(self.by_site, key=lambda s: s.order)

    def __getitem__(self, site: Site) -> Dictionary:
        return self.by_site[site].dictionary

    def infos(self) -> dict[str, DictionaryInfo]:
        return {site.name: self.by_site[site].info for site in self.sites}

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> DictionarySet:
        for entry in self.by_site.values():
            entry.dictionary.to(device, dtype)
        return self


def _sha256_files(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _read_json(path: Path, site: Site) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DictionaryError(f"{path}: cannot read the dictionary config for site {site} ({exc})") from None
    if not isinstance(data, dict):
        raise DictionaryError(f"{path}: the dictionary config for site {site} must be a JSON object")
    return data


def _build(cls: type[Dictionary], tensors: dict[str, Tensor], kwargs: dict[str, Any], where: str) -> Dictionary:
    try:
        return cls(tensors["W_enc"], tensors["b_enc"], tensors["W_dec"], tensors["b_dec"], **kwargs)
    except KeyError as exc:
        raise DictionaryError(f"{where}: missing tensor {exc.args[0]}") from None


def load_saelens_dir(path: Path, site: Site, *, default_id: str) -> tuple[Dictionary, DictionaryInfo]:
    """SAELens on-disk format: ``cfg.json`` + ``sae_weights.safetensors``."""
    from safetensors.torch import load_file

    cfg = _read_json(path / "cfg.json", site)
    weights = path / "sae_weights.safetensors"
    try:
        tensors = load_file(str(weights))
    except Exception as exc:  # safetensors raises several types for damaged files
        raise DictionaryError(f"{weights}: not a readable safetensors file for site {site} ({exc})") from None
    architecture = str(cfg.get("architecture", "standard"))
    if cfg.get("hook_name_out") or cfg.get("is_transcoder"):
        architecture = "transcoder"
    cls = ARCHITECTURES.get(architecture)
    if cls is None:
        raise DictionaryError(
            f"{path / 'cfg.json'}: architecture {architecture!r} for site {site} is not supported "
            f"(supported: {', '.join(sorted(set(ARCHITECTURES)))})"
        )
    normalize = cfg.get("normalize_activations")
    if normalize not in (None, "none"):
        raise DictionaryError(
            f"{path / 'cfg.json'}: normalize_activations={normalize!r} for site {site} is not supported "
            "(fold the scaling into the weights, or use a dictionary without it)"
        )
    hook_name = cfg.get("hook_name")
    if cls is not Transcoder and hook_name and hook_name not in _equivalent_hooks(site):
        log.warning("%s: trained on %s but attached to site %s (%s)", path, hook_name, site, site.hook)
    kwargs: dict[str, Any] = {"apply_b_dec_to_input": bool(cfg.get("apply_b_dec_to_input", True))}
    if cls is JumpReLUDictionary:
        if "threshold" in tensors:
            kwargs["threshold"] = tensors["threshold"]
        elif "log_threshold" in tensors:
            kwargs["threshold"] = tensors["log_threshold"].exp()
        else:
            raise DictionaryError(f"{weights}: a jumprelu dictionary needs a 'threshold' tensor (site {site})")
    if cls is TopKDictionary:
        k = cfg.get("k") or (cfg.get("activation_fn_kwargs") or {}).get("k")
        if not k:
            raise DictionaryError(f"{path / 'cfg.json'}: a topk dictionary needs 'k' (site {site})")
        kwargs["k"] = int(k)
    if cls is Transcoder:
        kwargs["input_hook"] = cfg.get("hook_name")
        kwargs["apply_b_dec_to_input"] = False
    dictionary = _build(cls, tensors, kwargs, str(weights))
    info = DictionaryInfo(
        id=str(cfg.get("dictionary_id") or cfg.get("neuronpedia_id") or default_id),
        kind=cls.kind,
        architecture=cls.architecture,
        d_dict=int(dictionary.W_enc.shape[-1]) if dictionary.W_enc.ndim == 2 else -1,
        sha256=_sha256_files([path / "cfg.json", weights]),
        path=str(path),
    )
    return dictionary, info


def _equivalent_hooks(site: Site) -> set[str]:
    """Hook names that carry the same activation as ``site`` (resid_post of L is resid_pre of L+1)."""
    hooks = {site.hook}
    if site.kind == "resid":
        hooks.add(f"blocks.{site.layer + 1}.hook_resid_pre")
    return hooks


def load_dictionary_learning_dir(path: Path, site: Site, *, default_id: str) -> tuple[Dictionary, DictionaryInfo]:
    """dictionary_learning format (the paper's code): ``ae.pt`` + ``config.json``."""
    cfg = _read_json(path / "config.json", site) if (path / "config.json").is_file() else {}
    trainer = cfg.get("trainer", {}) if isinstance(cfg.get("trainer"), dict) else {}
    dict_class = str(trainer.get("dict_class", "AutoEncoder"))
    weights = path / "ae.pt"
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DictionaryError(f"{weights}: not a readable torch state dict for site {site} ({exc})") from None
    cls = ARCHITECTURES.get(dict_class)
    if cls is None:
        raise DictionaryError(f"{path / 'config.json'}: dict_class {dict_class!r} for site {site} is not supported")
    kwargs: dict[str, Any] = {}
    try:
        if cls is JumpReLUDictionary:
            tensors = {k: state[k] for k in ("W_enc", "b_enc", "W_dec", "b_dec")}
            kwargs = {"threshold": state["threshold"], "apply_b_dec_to_input": False}
        else:
            # nn.Linear stores [out, in]: encoder.weight is [d_dict, d_in], decoder.weight [d_in, d_dict]
            b_dec = state["bias"] if "bias" in state else state["b_dec"]
            tensors = {
                "W_enc": state["encoder.weight"].T.contiguous(),
                "b_enc": state["encoder.bias"],
                "W_dec": state["decoder.weight"].T.contiguous(),
                "b_dec": b_dec,
            }
            kwargs = {"apply_b_dec_to_input": True}
            if cls is TopKDictionary:
                kwargs["k"] = int(state["k"]) if "k" in state else int(trainer["k"])
    except KeyError as exc:
        raise DictionaryError(f"{weights}: missing tensor {exc.args[0]} for a {dict_class} (site {site})") from None
    dictionary = _build(cls, tensors, kwargs, str(weights))
    info = DictionaryInfo(
        id=str(cfg.get("dictionary_id") or default_id),
        kind=cls.kind,
        architecture=cls.architecture,
        d_dict=int(dictionary.W_enc.shape[-1]),
        sha256=_sha256_files([weights]),
        path=str(path),
    )
    return dictionary, info


def load_dictionary(path: str | Path, site: Site, *, d_model: int, model_id: str) -> LoadedDictionary:
    """Load the dictionary in directory ``path`` for ``site``, refusing one that does not fit."""
    root = Path(path)
    if not root.is_dir():
        raise DictionaryError(f"{root}: no dictionary directory for site {site}")
    default_id = f"{model_id}/{site.name}/{root.name}"
    if (root / "cfg.json").is_file() and (root / "sae_weights.safetensors").is_file():
        dictionary, info = load_saelens_dir(root, site, default_id=default_id)
        where = str(root / "sae_weights.safetensors")
    elif (root / "ae.pt").is_file():
        dictionary, info = load_dictionary_learning_dir(root, site, default_id=default_id)
        where = str(root / "ae.pt")
    else:
        raise DictionaryError(
            f"{root}: not a dictionary for site {site}; expected cfg.json + sae_weights.safetensors (SAELens) "
            "or ae.pt + config.json (dictionary_learning)"
        )
    if info.kind == "transcoder" and site.kind != "mlp":
        raise DictionaryError(f"{root}: a transcoder replaces an MLP, so it fits mlp_L sites, not {site}")
    dictionary.check_shapes(where=f"{where} (site {site})", d_model=d_model)
    dictionary.to("cpu", torch.float32)
    check_finite(dictionary, where=f"{where} (site {site})")
    log.debug("loaded %s for %s (%s, d_dict=%d)", info.id, site, info.architecture, info.d_dict)
    return LoadedDictionary(site=site, dictionary=dictionary, info=info)


def check_finite(dictionary: Dictionary, *, where: str) -> None:
    """Refuse weights holding NaN or infinity: every node of the site would silently drop out of the
    circuit (NaN effects fail every threshold) and faithfulness would come out NaN."""
    for name, tensor in dictionary.tensors().items():
        if tensor.is_floating_point():
            bad = int((~torch.isfinite(tensor)).sum())
            if bad:
                kind = "NaN" if bool(torch.isnan(tensor).any()) else "infinite"
                raise DictionaryError(f"{where}: {name} holds {bad} non-finite value(s) (first kind: {kind}); "
                                      "the dictionary's weights are damaged")


ZOO_SPEC = "toy-zoo"
ZOO_TRANSCODERS_SPEC = "toy-zoo-transcoders"  # the zoo's SAEs, with its transcoders at the MLP sites


def load_dictionary_set(specs: list[str] | tuple[str, ...], *, n_layers: int, d_model: int, model_id: str) -> DictionarySet:
    """Resolve ``--dict`` values: ``toy-zoo`` (or ``toy-zoo-transcoders``), a directory with one sub-directory per site
    (``embed``, ``attn_0``, ``mlp_0``, ``resid_0``, …), or ``SITE=PATH`` pairs (repeatable, mixable)."""
    from sfc_graph.errors import SfcError
    from sfc_graph.sites import all_sites, parse_site

    if not specs:
        raise DictionaryError("no dictionaries given; pass --dict toy-zoo (or toy-zoo-transcoders), a directory of per-site dictionaries, or SITE=PATH")
    valid = set(all_sites(n_layers))
    paths: dict[Site, Path] = {}
    for spec in specs:
        if spec in (ZOO_SPEC, ZOO_TRANSCODERS_SPEC):
            paths.update(_zoo_paths(n_layers, transcoders=spec == ZOO_TRANSCODERS_SPEC))
        elif "=" in spec:
            name, _, value = spec.partition("=")
            try:
                site = parse_site(name.strip())
            except SfcError as exc:
                raise DictionaryError(f"--dict {spec}: {exc}") from None
            if site not in valid:
                raise DictionaryError(f"--dict {spec}: the model has {n_layers} layers, so there is no site {site}")
            paths[site] = Path(value)
        else:
            root = Path(spec)
            if not root.is_dir():
                raise DictionaryError(
                    f"--dict {spec}: not {ZOO_SPEC}, SITE=PATH, or a directory of per-site dictionaries"
                )
            found = {site: root / site.name for site in all_sites(n_layers) if (root / site.name).is_dir()}
            if not found:
                raise DictionaryError(
                    f"{root}: no per-site sub-directories (embed, attn_0, mlp_0, resid_0, …) for this "
                    f"{n_layers}-layer model"
                )
            paths.update(found)
    loaded = {site: load_dictionary(path, site, d_model=d_model, model_id=model_id) for site, path in paths.items()}
    return DictionarySet(by_site=loaded)


def _zoo_paths(n_layers: int, *, transcoders: bool = False) -> dict[Site, Path]:
    from sfc_graph.sites import all_sites

    try:
        from sfc_graph import zoo
    except ImportError as exc:
        raise DictionaryError(f"the toy zoo is not available in this installation ({exc})") from None
    paths = {}
    for site in all_sites(n_layers):
        if transcoders and site.kind == "mlp":
            paths[site] = Path(zoo.transcoder_path(site.layer))
        else:
            paths[site] = Path(zoo.dictionary_path(site.name))
    return paths
