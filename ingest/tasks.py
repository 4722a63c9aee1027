"""Tasks: JSONL files of prompts with answers, validated against a model's tokenizer.

One JSON object per line::

    {"clean": "the parents near the dog", "patch": "the parent near the dog",
     "clean_answer": "are", "patch_answer": "is", "template": "bare-pp-bare"}

``patch`` and ``patch_answer`` are optional, but a file has them on every line or on none: with them the
metric is the logit difference and the patch run is the counterfactual; without them the metric is
``-log p(clean_answer)`` and the patch is a zero or mean ablation. Answers are single tokens; a clean prompt
and its patch have the same number of tokens, so that positions align.

``template`` (optional) names the example's template: examples of one template have the same slot at every
position. Per-position means (mean ablation, evaluation) are taken within a template, never across
templates, and ``--aggregation none`` needs one template; ``name#template`` (e.g. ``ioi#ioi-0``) loads the
examples of one template only.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from sfc_graph.errors import TaskError

from .model import ModelHandle, answer_token, tokenize, unknown_token_id


@dataclass(frozen=True)
class Example:
    clean: str
    clean_answer: str
    patch: str | None = None
    patch_answer: str | None = None
    template: str | None = None

    def to_json(self) -> dict[str, str]:
        row = {"clean": self.clean, "clean_answer": self.clean_answer}
        if self.patch is not None:
            row["patch"] = self.patch
        if self.patch_answer is not None:
            row["patch_answer"] = self.patch_answer
        if self.template is not None:
            row["template"] = self.template
        return row


@dataclass(frozen=True)
class Task:
    name: str
    examples: tuple[Example, ...]
    source: str

    @property
    def has_counterfactuals(self) -> bool:
        return self.examples[0].patch is not None

    def head(self, n: int | None) -> Task:
        return self if n is None else Task(self.name, self.examples[:n], self.source)

    @property
    def templates(self) -> list[str | None]:
        """The examples' template ids, in order of first appearance (``[None]`` for an untemplated file)."""
        return list(dict.fromkeys(example.template for example in self.examples))

    def only_template(self, template: str) -> Task:
        """The examples of one template (refused when there are none)."""
        examples = tuple(e for e in self.examples if e.template == template)
        if not examples:
            known = ", ".join(str(t) for t in self.templates)
            raise TaskError(f"{self.source}: no example has template {template!r} (templates: {known})")
        return Task(f"{self.name}#{template}", examples, self.source)

    def sha256(self) -> str:
        """Digest of the examples themselves (canonical JSON), not of the file's bytes."""
        digest = hashlib.sha256()
        for example in self.examples:
            digest.update(json.dumps(example.to_json(), sort_keys=True, ensure_ascii=False).encode())
            digest.update(b"\n")
        return digest.hexdigest()


def load_task(spec: str) -> Task:
    """A zoo task name (``agreement_nounpp``) or the path of a JSONL file; ``#template`` appended to
    either keeps the examples of that template only."""
    if "#" in spec and not Path(spec).exists():
        spec, template = spec.rsplit("#", 1)
        return load_task(spec).only_template(template)
    path = Path(spec)
    if path.suffix in (".jsonl", ".json") or path.exists() or "/" in spec:
        if not path.is_file():
            raise TaskError(f"{path}: no such task file")
        return read_task_file(path, name=path.stem)
    try:
        from sfc_graph import zoo
    except ImportError:
        raise TaskError(f"{spec!r} is not a task file, and the toy zoo (which names tasks) is not installed") from None
    names = list(zoo.task_names())
    if spec not in names:
        raise TaskError(f"unknown task {spec!r}: give a JSONL path or one of the zoo's tasks ({', '.join(names)})")
    return read_task_file(Path(zoo.task_path(spec, split="test")), name=spec)


def read_task_file(path: Path, *, name: str) -> Task:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise TaskError(f"{path}: cannot read the task file ({exc})") from None
    examples = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        examples.append(_parse_line(line, path, number))
    if not examples:
        raise TaskError(f"{path}: the task file has no examples")
    with_patch = {example.patch is not None for example in examples}
    if len(with_patch) > 1:
        raise TaskError(f"{path}: some lines have a 'patch' and some do not; give counterfactuals on every line or none")
    return Task(name=name, examples=tuple(examples), source=str(path))


def _parse_line(line: str, path: Path, number: int) -> Example:
    where = f"{path}:{number}"
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise TaskError(f"{where}: not valid JSON ({exc.msg})") from None
    if not isinstance(row, dict):
        raise TaskError(f"{where}: each line must be a JSON object")
    for key in ("clean", "clean_answer"):
        if not isinstance(row.get(key), str) or not row[key].strip():
            raise TaskError(f"{where}: needs a non-empty string {key!r}")
    for key in ("patch", "patch_answer", "template"):
        if key in row and not isinstance(row[key], str):
            raise TaskError(f"{where}: {key!r} must be a string")
    if ("patch" in row) != ("patch_answer" in row):
        raise TaskError(f"{where}: 'patch' and 'patch_answer' go together; give both or neither")
    return Example(row["clean"], row["clean_answer"], row.get("patch"), row.get("patch_answer"), row.get("template"))


# ------------------------------------------------------------------------------------------ tokenized


@dataclass
class Answers:
    """Answer tokens for ``n`` rows of a forward pass (rows may repeat examples)."""

    clean: Tensor  # [n] int64
    patch: Tensor | None  # [n] int64


@dataclass
class Batch:
    """Examples of equal token length, on the model's device."""

    clean: Tensor  # [batch, pos] int64
    patch: Tensor | None  # [batch, pos] int64
    clean_answer: Tensor  # [batch] int64
    patch_answer: Tensor | None  # [batch] int64
    indices: list[int]  # positions of these examples in the task
    template: str | None = None  # every example of a batch has this template

    @property
    def size(self) -> int:
        return int(self.clean.shape[0])

    @property
    def n_pos(self) -> int:
        return int(self.clean.shape[1])

    def answers(self, rows: Tensor | None = None, *, repeat: int = 1) -> Answers:
        """Answers for rows that are examples ``rows`` of this batch, or the batch stacked ``repeat`` times."""
        def pick(values: Tensor | None) -> Tensor | None:
            if values is None:
                return None
            return values[rows] if rows is not None else values.repeat(repeat)

        return Answers(clean=pick(self.clean_answer), patch=pick(self.patch_answer))  # type: ignore[arg-type]


@dataclass
class TokenizedTask:
    task: Task
    clean: list[list[int]]
    patch: list[list[int]] | None
    clean_answer: list[int]
    patch_answer: list[int] | None

    @property
    def lengths(self) -> set[int]:
        return {len(tokens) for tokens in self.clean}

    @property
    def templates(self) -> set[str | None]:
        return {example.template for example in self.task.examples}

    def batches(self, batch_size: int, device: torch.device) -> list[Batch]:
        """Group examples by template and token length (no padding needed, aligned slots), in order,
        ``batch_size`` at a time."""
        groups: dict[tuple[str, int], list[int]] = defaultdict(list)
        for index, tokens in enumerate(self.clean):
            groups[(self.task.examples[index].template or "", len(tokens))].append(index)
        batches = []
        for key in sorted(groups, key=lambda k: (k[1], k[0])):
            members = groups[key]
            for start in range(0, len(members), batch_size):
                chunk = members[start : start + batch_size]
                batches.append(self._batch(chunk, device))
        return batches

    def _batch(self, chunk: list[int], device: torch.device) -> Batch:
        def longs(values: list) -> Tensor:
            return torch.tensor(values, dtype=torch.long, device=device)

        return Batch(
            clean=longs([self.clean[i] for i in chunk]),
            patch=longs([self.patch[i] for i in chunk]) if self.patch is not None else None,
            clean_answer=longs([self.clean_answer[i] for i in chunk]),
            patch_answer=longs([self.patch_answer[i] for i in chunk]) if self.patch_answer is not None else None,
            indices=list(chunk),
            template=self.task.examples[chunk[0]].template,
        )


def tokenize_task(task: Task, handle: ModelHandle) -> TokenizedTask:
    """Tokenize every example, refusing unknown words, multi-token answers and misaligned pairs."""
    unk = unknown_token_id(handle)
    n_ctx = int(handle.model.cfg.n_ctx)
    clean, patch, clean_ans, patch_ans = [], [], [], []
    for number, example in enumerate(task.examples, start=1):
        where = f"{task.source} example {number}"
        clean_tokens = _tokens(handle, example.clean, unk, where, "clean", n_ctx)
        clean.append(clean_tokens)
        clean_ans.append(_answer(handle, example.clean_answer, where, "clean_answer"))
        if example.patch is not None:
            patch_tokens = _tokens(handle, example.patch, unk, where, "patch", n_ctx)
            if len(patch_tokens) != len(clean_tokens):
                raise TaskError(
                    f"{where}: clean has {len(clean_tokens)} tokens but patch has {len(patch_tokens)}; "
                    "a counterfactual pair must have the same token length so that positions align"
                )
            patch.append(patch_tokens)
            patch_ans.append(_answer(handle, example.patch_answer or "", where, "patch_answer"))
    has_patch = task.has_counterfactuals
    return TokenizedTask(task, clean, patch if has_patch else None, clean_ans, patch_ans if has_patch else None)


def _tokens(handle: ModelHandle, text: str, unk: int | None, where: str, field: str, n_ctx: int) -> list[int]:
    tokens = tokenize(handle, text)
    if unk is not None and unk in tokens:
        words = text.split()
        unknown = [w for w in words if unk in tokenize(handle, w, prepend_bos=False)]
        shown = unknown[0] if unknown else text
        raise TaskError(f"{where}: {field} has a token the model does not know ({shown!r})")
    if len(tokens) > n_ctx:
        raise TaskError(f"{where}: {field} has {len(tokens)} tokens, more than the model's context of {n_ctx}")
    return tokens


def _answer(handle: ModelHandle, answer: str, where: str, field: str) -> int:
    token = answer_token(handle, answer)
    if token is None:
        raise TaskError(f"{where}: {field} {answer!r} is not a single token the model knows")
    return token
