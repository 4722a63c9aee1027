"""Cross-task comparison reports: how circuits for several tasks overlap, which features they share, where
their effects sit, how much the SAE errors carry and how faithful the circuits are.

The work is split by concern: :mod:`.data` gathers the numbers from the store as polars tables,
:mod:`.figures` draws them, :mod:`.summary` says what they show, :mod:`.render` writes Markdown and HTML.
Output: ``report.md`` (plots as PNG files beside it) and ``report.html`` (the same plots embedded as data
URIs, so the file can be mailed alone).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ..errors import ReportError
from .data import TOP_K, ComparisonData, gather, resolve_selectors
from . import render
from .summary import summary_lines

if TYPE_CHECKING:  # pragma: no cover
    from ..store.base import BaseStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ComparisonReport:
    """What :func:`build_comparison_report` wrote."""

    out_dir: Path
    markdown: Path
    html: Path
    images: tuple[Path, ...]
    circuits: tuple[str, ...]
    summary: tuple[str, ...]


def build_comparison_report(
    store: "BaseStore", selectors: Sequence[str], out_dir: str | Path, *, top_k: int = TOP_K
) -> ComparisonReport:
    """Compare the circuits ``selectors`` name (circuit ids, or task names meaning all their circuits).

    Writes ``report.md``, ``report.html`` and the PNG plots into ``out_dir`` (created if needed).
    """
    circuits = resolve_selectors(store, selectors)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ReportError(f"{out} is a file; give a directory for the report")
    out.mkdir(parents=True, exist_ok=True)
    log.info("comparing %d circuit(s): %s", circuits.height, ", ".join(circuits["id"]))
    data = gather(store, circuits, top_k=top_k)
    from .figures import write_figures  # matplotlib loads here, not on import

    images = write_figures(data, out)
    summary = summary_lines(data)
    markdown = out / "report.md"
    markdown.write_text(render.markdown(data, summary, images), encoding="utf-8")
    page = out / "report.html"
    page.write_text(render.html_page(data, summary, images), encoding="utf-8")
    log.info("wrote %s and %s", markdown, page)
    return ComparisonReport(out, markdown, page, tuple(p for p in images.values() if p is not None),
                            tuple(data.ids), tuple(summary))


__all__ = ["ComparisonData", "ComparisonReport", "ReportError", "build_comparison_report", "resolve_selectors"]
