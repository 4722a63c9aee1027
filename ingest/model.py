"""Model access: the only module that loads transformer_lens models.

A model spec is ``toy-zoo`` (the shipped zoo), a local checkpoint directory (``config.json`` holding
HookedTransformerConfig fields, ``model.safetensors``, optionally ``tokenizer.json``), or a
transformer_lens pretrained name such as ``gpt2`` / ``pythia-70m-deduped`` (needs the weights online or in
the Hugging Face cache). Switching to transformer_lens 4's TransformerBridge is a change to this file.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sfc_graph.errors import ComputeError

log = logging.getLogger(__name__)

ZOO_SPEC = "toy-zoo"


@dataclass
class ModelHandle:
    """A loaded model and what identifies its weights."""

    model: Any  # transformer_lens.HookedTransformer
    model_id: str
    weights_sha256: str
    source: str
    # A classifier head in place of the unembedding (ingest/probe.py): answers then name classes, not tokens.
    class_labels: tuple[str, ...] | None = None

    @property
    def device(self) -> torch.device:
        return self.model.cfg.device if isinstance(self.model.cfg.device, torch.device) else torch.device(
            self.model.cfg.device
        )

    @property
    def n_layers(self) -> int:
        return int(self.model.cfg.n_layers)

    @property
    def d_model(self) -> int:
        return int(self.model.cfg.d_model)


@contextlib.contextmanager
def _quiet_transformer_lens():
    """transformer_lens 3.9 warns on every HookedTransformer that 4.0 removes it; we pin 3.9 knowingly
    (pyproject.toml: transformer-lens 3.9 pinned), so that warning is noise for our users."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="HookedTransformer is deprecated")
        yield


def resolve_device(device: str) -> torch.device:
    """``auto`` is CUDA when available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ComputeError(f"--device {device} was asked for, but torch sees no CUDA device here")
    try:
        return torch.device(device)
    except RuntimeError:
        raise ComputeError(f"{device!r} is not a device; use auto, cpu or cuda") from None


def state_dict_sha256(model: torch.nn.Module) -> str:
    """A digest of the weights themselves (names, shapes, dtypes and bytes), independent of the file format."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def wrap(model: Any, *, model_id: str, source: str = "in-memory") -> ModelHandle:
    """A handle for a HookedTransformer built elsewhere (tests, notebooks)."""
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return ModelHandle(model=model, model_id=model_id, weights_sha256=state_dict_sha256(model), source=source)


def load_model(spec: str, *, device: str = "auto") -> ModelHandle:
    """Load the model named by ``spec`` onto ``device`` (see the module docstring)."""
    target = resolve_device(device)
    if spec == ZOO_SPEC:
        return _load_zoo(target)
    path = Path(spec)
    if path.is_dir():
        return _load_checkpoint_dir(path, target)
    if spec.startswith(("/", "./", "../", "~")):
        raise ComputeError(f"{spec}: no such model directory (a checkpoint directory, {ZOO_SPEC}, or a model name)")
    return _load_pretrained(spec, target)


def _load_zoo(device: torch.device) -> ModelHandle:
    try:
        from sfc_graph import zoo
    except ImportError as exc:
        raise ComputeError(f"the toy zoo is not available in this installation ({exc})") from None
    chatter = io.StringIO()  # transformer_lens prints "Moving model to device"; keep stdout for results
    with _quiet_transformer_lens(), contextlib.redirect_stdout(chatter):
        model = zoo.load_model(device)
    if chatter.getvalue().strip():
        log.debug("zoo: %s", chatter.getvalue().strip())
    return wrap(model, model_id=zoo.ZOO_NAME, source=str(zoo.zoo_dir()))


def _load_checkpoint_dir(path: Path, device: torch.device) -> ModelHandle:
    from safetensors.torch import load_file
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    config_file, weights_file = path / "config.json", path / "model.safetensors"
    for needed in (config_file, weights_file):
        if not needed.is_file():
            raise ComputeError(f"{needed}: missing; a model directory holds config.json and model.safetensors")
    try:
        fields = json.loads(config_file.read_text(encoding="utf-8"))
        cfg = HookedTransformerConfig(**{k: v for k, v in fields.items() if k in _config_fields()})
    except Exception as exc:
        raise ComputeError(f"{config_file}: not a HookedTransformerConfig ({exc})") from None
    tokenizer = None
    if (path / "tokenizer_config.json").is_file():
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(path))
    elif (path / "tokenizer.json").is_file():
        tokenizer = _bare_tokenizer(path / "tokenizer.json")
    with _quiet_transformer_lens():
        model = HookedTransformer(cfg, tokenizer=tokenizer, move_to_device=False)
    try:
        weights = load_file(str(weights_file))
    except Exception as exc:  # safetensors raises its own SafetensorError (and OSError) for a damaged file
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ComputeError(f"{weights_file}: not a readable safetensors file ({reason[:160]})") from None
    try:
        model.load_state_dict(weights, strict=False)
    except RuntimeError as exc:
        raise ComputeError(f"{weights_file}: does not fit {config_file} ({str(exc).splitlines()[0]})") from None
    model.to(device, print_details=False)
    model_id = str(fields.get("model_id") or fields.get("model_name") or path.name)
    return wrap(model, model_id=model_id, source=str(path))


# The usual spellings of the special tokens, first found wins. A bare tokenizer.json (no tokenizer_config.json
# beside it) lists its special tokens but not their roles; transformer_lens needs a bos token to prepend and a
# pad token to batch prompts of different lengths.
SPECIAL_TOKEN_NAMES = {
    "bos_token": ("<bos>", "<s>", "<|begin_of_text|>", "<|endoftext|>", "[CLS]"),
    "eos_token": ("<eos>", "</s>", "<|end_of_text|>", "<|endoftext|>", "[SEP]"),
    "pad_token": ("<pad>", "[PAD]", "<|pad|>"),
    "unk_token": ("<unk>", "[UNK]", "<|unk|>"),
}


def _bare_tokenizer(file: Path):
    """A ``tokenizer.json`` without its config, with bos/eos/pad/unk taken from its special tokens (pad falls
    back to eos, then bos: right-padded prompts never attend to it)."""
    from transformers import PreTrainedTokenizerFast

    try:
        listed = json.loads(file.read_text(encoding="utf-8")).get("added_tokens") or []
        special = {t["content"] for t in listed if isinstance(t, dict) and t.get("special")}
    except (OSError, ValueError, AttributeError, KeyError) as exc:
        raise ComputeError(f"{file}: not a readable tokenizer.json ({exc})") from None
    roles = {role: next((name for name in names if name in special), None) for role, names in SPECIAL_TOKEN_NAMES.items()}
    if roles["bos_token"] is None:
        raise ComputeError(f"{file}: none of its special tokens is a beginning-of-sequence token "
                           f"({', '.join(SPECIAL_TOKEN_NAMES['bos_token'])}); put a tokenizer_config.json naming "
                           "bos_token beside it")
    roles["pad_token"] = roles["pad_token"] or roles["eos_token"] or roles["bos_token"]
    try:
        # add_bos_token set here: transformer_lens keeps a tokenizer that has it instead of reloading one by name
        return PreTrainedTokenizerFast(tokenizer_file=str(file), name_or_path=str(file.parent), add_bos_token=True,
                                       padding_side="right", model_max_length=10**6,
                                       **{role: name for role, name in roles.items() if name is not None})
    except Exception as exc:  # the tokenizers library raises its own exception types for a damaged file
        raise ComputeError(f"{file}: not a readable tokenizer.json ({str(exc).strip().splitlines()[0][:160]})") from None


def _config_fields() -> set[str]:
    import dataclasses

    from transformer_lens import HookedTransformerConfig

    return {f.name for f in dataclasses.fields(HookedTransformerConfig)}


def _load_pretrained(name: str, device: torch.device) -> ModelHandle:
    from transformer_lens import HookedTransformer

    try:
        with _quiet_transformer_lens():
            model = HookedTransformer.from_pretrained(name, device=str(device))
    except Exception as exc:  # unknown names, no network, missing cache all land here
        raise ComputeError(
            f"cannot load model {name!r}: {str(exc).splitlines()[0][:200]} "
            f"(give {ZOO_SPEC}, a checkpoint directory, or a transformer_lens model name)"
        ) from None
    return wrap(model, model_id=name, source="transformer_lens pretrained")


# ---------------------------------------------------------------------------------------------- tokens


def tokenize(handle: ModelHandle, text: str, *, prepend_bos: bool | None = None) -> list[int]:
    """Token ids of ``text`` as the model reads it (BOS per the model's default unless told)."""
    tokenizer = handle.model.tokenizer
    if tokenizer is None:
        raise ComputeError(f"model {handle.model_id} has no tokenizer, so text tasks cannot be read")
    tokens = handle.model.to_tokens(text, prepend_bos=prepend_bos, truncate=False)
    return [int(t) for t in tokens[0].tolist()]


def unknown_token_id(handle: ModelHandle) -> int | None:
    tokenizer = handle.model.tokenizer
    return getattr(tokenizer, "unk_token_id", None) if tokenizer is not None else None


def answer_token(handle: ModelHandle, answer: str) -> int | None:
    """The single token for ``answer`` (trying a leading space for BPE vocabularies), or None.

    For a classifier (``handle.class_labels``) the "token" is the index of the class named ``answer``.
    """
    if handle.class_labels is not None:
        return handle.class_labels.index(answer) if answer in handle.class_labels else None
    for candidate in (answer, " " + answer) if not answer.startswith(" ") else (answer,):
        tokens = tokenize(handle, candidate, prepend_bos=False)
        if len(tokens) == 1 and tokens[0] != unknown_token_id(handle):
            return tokens[0]
    return None
