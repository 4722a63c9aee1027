"""Circuit discovery: sparse feature circuits on transformer_lens models, written as bundles.

The public entry points (imported lazily so that ``import sfc_graph.ingest`` stays cheap):

* :func:`compute_bundle` — specs in (``"toy-zoo"``, a task name), bundle out;
* :func:`compute_circuit` with :class:`CircuitSettings`, :func:`load_model`, :func:`load_dictionary_set`,
  :func:`load_task` — the same in steps;
* :func:`run_job` — a TOML job of many circuits, sharded, loaded into a store.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CircuitSettings": "compute",
    "Circuit": "compute",
    "compute_circuit": "compute",
    "compute_bundle": "compute",
    "circuit_id": "compute",
    "load_model": "model",
    "ModelHandle": "model",
    "load_dictionary_set": "dictionaries",
    "load_task": "tasks",
    "run_job": "job",
    "load_job": "job",
}

__all__ = ["Circuit", "CircuitSettings", "ModelHandle", "circuit_id", "compute_bundle", "compute_circuit",
           "load_dictionary_set", "load_job", "load_model", "load_task", "run_job"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
