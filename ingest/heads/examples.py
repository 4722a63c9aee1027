"""Positive and negative prompts for the discrete-SAE method.

A *positive* is a prompt on which the model can predict the answer (the task's clean prompt); a *negative* is
a matching prompt from which the information the circuit uses has been removed:

* ``counterfactual``: the task's own patch prompt (greater_than: "… from the year 1701 to the year 17", where
  every later year is as good; copy: the corrupted context);
* ``abc`` (IOI): the clean prompt with the repeated subject's second mention replaced by a third name that is
  not in the prompt, so that no name repeats and the indirect object is no longer identifiable (the "ABC"
  distribution of Wang et al.). Names are the task's answers (every answer of an IOI task is a name).
"""

from __future__ import annotations

import random
from collections import Counter

from sfc_graph.errors import TaskError

from ..tasks import Task
from .settings import NEGATIVES

AUTO_NEGATIVES = {"ioi": "abc"}  # tasks whose published negatives are not their counterfactuals


def resolve_negatives(kind: str, task_name: str) -> str:
    if kind not in NEGATIVES:
        raise TaskError(f"negatives {kind!r}: use one of {', '.join(NEGATIVES)}")
    return AUTO_NEGATIVES.get(task_name, "counterfactual") if kind == "auto" else kind


def positives_and_negatives(task: Task, kind: str, *, seed: int) -> tuple[list[str], list[str]]:
    """The clean prompts and one negative per clean prompt, in the task's order."""
    positives = [example.clean for example in task.examples]
    if kind == "counterfactual":
        if not task.has_counterfactuals:
            raise TaskError(f"task {task.name}: counterfactual negatives need patch prompts, which it has not")
        return positives, [example.patch for example in task.examples]  # type: ignore[misc]
    if kind == "abc":
        return positives, abc_negatives(task, seed=seed)
    raise TaskError(f"negatives {kind!r}: use counterfactual or abc")


def abc_negatives(task: Task, *, seed: int) -> list[str]:
    """Each clean prompt with the second mention of its repeated name replaced by a name it does not contain.

    >>> from sfc_graph.ingest.tasks import Example, Task
    >>> t = Task("ioi", (Example("ann and bob met , and bob gave it to", "ann", None, "bob"),
    ...                  Example("cy and dan met , and cy gave it to", "dan", None, "cy")), "doc")
    >>> abc_negatives(t, seed=0)
    ['ann and bob met , and dan gave it to', 'cy and dan met , and bob gave it to']
    """
    names = sorted({e.clean_answer for e in task.examples} | {e.patch_answer for e in task.examples if e.patch_answer})
    rng = random.Random(seed)
    out = []
    for number, example in enumerate(task.examples, start=1):
        words = example.clean.split()
        repeated = [w for w, c in Counter(w for w in words if w in names).items() if c >= 2]
        if len(repeated) != 1:
            raise TaskError(
                f"task {task.name} example {number}: abc negatives need exactly one repeated name, found "
                f"{len(repeated)} in {example.clean!r}"
            )
        others = [n for n in names if n not in words]
        if not others:
            raise TaskError(f"task {task.name}: too few distinct names for abc negatives")
        last = len(words) - 1 - words[::-1].index(repeated[0])
        words[last] = rng.choice(others)
        out.append(" ".join(words))
    return out
