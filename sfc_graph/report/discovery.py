"""The discovery report of ``sfc discover``: the clusters found, example contexts, circuit sizes and, on a
labelled corpus, how the clusters agree with the planted behaviours (ARI, purity, a cluster × label table,
and circuit overlap within vs across planted behaviours).

Data first (:func:`behaviour_table`, :func:`label_table`: plain polars), then one figure, then Markdown and a
self-contained HTML page, as the comparison report does.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from ..errors import ReportError
from .render import CSS, _html_table, _md_table, _now

if TYPE_CHECKING:  # pragma: no cover
    from ..ingest.discovery import DiscoveryRun

EXAMPLES_SHOWN = 3


def behaviour_table(run: DiscoveryRun) -> pl.DataFrame:
    """One row per behaviour, largest first: size, dominant planted label and its share, circuit, examples."""
    rows = []
    for b in run.discovery.behaviours:
        counts = b.label_counts()
        total = sum(counts.values())
        dominant = b.dominant_label
        rows.append({
            "behaviour": b.name.rsplit("/", 1)[-1], "size": b.size, "planted label": dominant,
            "label share": counts[dominant] / total if dominant else None, "circuit": b.circuit_id,
            "examples": " · ".join(f"{c.text} → {c.answer}" for c in b.contexts[:EXAMPLES_SHOWN]),
        })
    return pl.DataFrame(rows, schema={"behaviour": pl.String, "size": pl.Int64, "planted label": pl.String,
                                      "label share": pl.Float64, "circuit": pl.String, "examples": pl.String})


def label_table(run: DiscoveryRun) -> pl.DataFrame:
    """Contexts per (cluster, planted label): rows are clusters, columns labels (empty without labels)."""
    contexts = run.discovery.contexts
    if not contexts or any(c.label is None for c in contexts):
        return pl.DataFrame()
    frame = pl.DataFrame({"cluster": [int(a) for a in run.discovery.assignments], "label": [c.label for c in contexts]})
    return frame.pivot(on="label", index="cluster", values="label", aggregate_function="len").fill_null(0).sort("cluster")


def write_discovery_report(run: DiscoveryRun, out_dir: str | Path) -> Path:
    """Write ``report.md``, ``report.html`` and ``clusters.png`` into ``out_dir``; returns the HTML path."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"cannot create the report directory {out} ({exc.strerror or exc})") from None
    behaviours, labels = behaviour_table(run), label_table(run)
    figure = _figure(behaviours, labels, out / "clusters.png")
    lines = summary_lines(run)
    found = run.discovery
    title = f"Behaviour discovery {found.id}"
    md = [f"# {title}", "", f"Generated {_now()} by sfc-graph (`sfc discover`).", "", "## Summary", ""]
    md += [f"- {line}" for line in lines]
    md += ["", "## Behaviours", "", "![clusters](clusters.png)", "", _md_table(behaviours)]
    if labels.height:
        md += ["## Clusters × planted labels", "", _md_table(labels)]
    md += ["## Settings", "", "```", *(f"{k} = {v}" for k, v in found.settings.to_dict().items()), "```", ""]
    html_parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1><p class='meta'>Generated {_now()} by sfc-graph (<code>sfc discover</code>)</p>",
        "<h2>Summary</h2><ul class='summary'>", "".join(f"<li>{html.escape(line)}</li>" for line in lines), "</ul>",
        "<h2>Behaviours</h2>",
        f"<figure><img alt='clusters' src='data:image/png;base64,{base64.b64encode(figure.read_bytes()).decode()}'>"
        "</figure>",
        _html_table(behaviours),
    ]
    if labels.height:
        html_parts += ["<h2>Clusters × planted labels</h2>", _html_table(labels)]
    html_parts.append("</body></html>\n")
    try:
        (out / "report.md").write_text("\n".join(md), encoding="utf-8")
        (out / "report.html").write_text("\n".join(html_parts), encoding="utf-8")
    except OSError as exc:
        raise ReportError(f"cannot write the report into {out} ({exc.strerror or exc})") from None
    return out / "report.html"


def summary_lines(run: DiscoveryRun) -> list[str]:
    """What the discovery found, in a few sentences (the report's summary; the CLI prints them too)."""
    found = run.discovery
    lines = [
        f"{len(found.behaviours)} behaviours (clusters of at least {found.settings.min_cluster_size} contexts) from "
        f"{len(found.contexts)} contexts of {found.corpus}, clustering {found.settings.features} vectors "
        f"({found.settings.algorithm}, {found.settings.n_clusters} clusters)",
        f"{run.computed} circuits computed, {run.loaded} loaded into the store",
    ]
    if found.agreement:
        lines.append(f"agreement with the planted behaviours: adjusted Rand index {found.agreement['ari']:.3f}, "
                     f"purity {found.agreement['purity']:.3f}")
    if "ari_planted" in found.agreement:
        lines.append(f"on the contexts a planted mechanism decides (not filler): adjusted Rand index "
                     f"{found.agreement['ari_planted']:.3f}, purity {found.agreement['purity_planted']:.3f}")
    if "within" in run.overlap and "across" in run.overlap:
        lines.append(f"circuit overlap (node Jaccard): {run.overlap['within']:.3f} between behaviours with the same "
                     f"planted label, {run.overlap['across']:.3f} between different ones")
    timings = ", ".join(f"{k} {v:.1f} s" for k, v in run.seconds.items())
    lines.append(f"time: {timings}")
    return lines


def _figure(behaviours: pl.DataFrame, labels: pl.DataFrame, path: Path) -> Path:
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 3.2), layout="constrained")
    ax = figure.subplots()
    names = sorted({label for label in behaviours["planted label"].to_list() if label})
    cmap = colormaps["tab10"]
    colour = {name: cmap(i % 10) for i, name in enumerate(names)}
    ax.bar(range(behaviours.height), behaviours["size"].to_list(),
           color=[colour.get(label, "#888888") for label in behaviours["planted label"].to_list()])
    ax.set_xlabel("behaviour (largest first)")
    ax.set_ylabel("contexts")
    if names:
        from matplotlib.patches import Patch

        ax.legend(handles=[Patch(color=colour[n], label=n) for n in names], title="planted label", fontsize=8)
    figure.savefig(path, dpi=110, facecolor="white")
    return path


__all__ = ["behaviour_table", "label_table", "summary_lines", "write_discovery_report"]
