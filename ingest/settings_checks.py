"""What every settings dataclass of the ingest jobs (circuits, heads, discovery) does alike: refuse a bad value,
or a key that is not a setting, with one sentence (a :class:`ComputeError`, which the CLI prints as it is)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from sfc_graph.errors import ComputeError


def require(checks: Iterable[tuple[bool, str]]) -> None:
    """Raise the message of the first check that failed.

    >>> require([(True, "fine"), (False, "n must be at least 1")])
    Traceback (most recent call last):
    ...
    sfc_graph.errors.ComputeError: n must be at least 1
    """
    for ok, message in checks:
        if not ok:
            raise ComputeError(message)


def refuse_unknown(settings_class: type, data: Mapping[str, Any], *, what: str = "setting") -> None:
    """Refuse keys of ``data`` that are not fields of ``settings_class`` (a typo would silently do nothing)."""
    names = {f.name for f in dataclasses.fields(settings_class)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ComputeError(f"unknown {what}(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
