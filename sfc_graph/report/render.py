"""The report as Markdown (figures beside it) and as one self-contained HTML page (figures embedded)."""

from __future__ import annotations

import base64
import datetime as _dt
import html
import math
from pathlib import Path
from typing import Any

import polars as pl

from .data import MAX_MATRIX_CIRCUITS, ComparisonData, site_label

MAX_OVERLAP_ROWS = 50  # most overlapping pairs listed when the comparison is large

SECTIONS = (
    ("overlap", "Overlap between circuits",
     "Jaccard compares node sets: a feature is the same node in every circuit over its dictionary, error nodes "
     "match by site and layer. The weighted overlap is Σ min(|e_a|, |e_b|) / Σ max(|e_a|, |e_b|) over those "
     "nodes, so it counts how much of the effect the circuits share, not just how many nodes."),
    ("shared", "Shared features", "Features present in at least two of the circuits, most widely shared first; "
     "effects per circuit where it fits."),
    ("layers", "Per-layer profiles", "Each site's share of a circuit's total |effect| (top) and its node count "
     "(bottom); the output node is left out."),
    ("top", "Top features per circuit", "The features with the largest |effect| on the metric."),
    ("errors", "Error share", "The fraction of |effect| on SAE error nodes, per site and for the whole circuit."),
    ("faithfulness", "Faithfulness and completeness", "From the evaluation stored in each circuit's manifest."),
)


def _tables(data: ComparisonData) -> dict[str, list[tuple[str | None, pl.DataFrame]]]:
    labels = data.labels
    overlap = data.overlap.select(
        pl.col("circuit_a").replace_strict(labels, default=pl.col("circuit_a")).alias("circuit a"),
        pl.col("circuit_b").replace_strict(labels, default=pl.col("circuit_b")).alias("circuit b"),
        "jaccard", pl.col("weighted_overlap").alias("weighted overlap"),
    ).sort("jaccard", descending=True, nulls_last=True) if data.overlap.height else data.overlap
    shared = data.shared
    if shared.height:
        shared = shared.with_columns(pl.Series("site", [site_label(s, l) for s, l in zip(shared["site"], shared["layer"])]))
        keep = ["feature", "site", "count", "tasks"] + [c for c in shared.columns if c in labels.values()]
        if len(data.ids) > MAX_MATRIX_CIRCUITS:
            keep.append("effects")
        if "label" in shared.columns and "label" not in labels.values() and shared["label"].null_count() < shared.height:
            keep.append("label")  # the features' labels, last, when any has one (sfc label, sfc features build)
        shared = shared.select(keep)
    # feature labels (sfc label, sfc features build) beside the ids, when the store has them
    labelled = all("label" in data.top[c].columns for c in data.shown) and any(
        data.top[c]["label"].null_count() < data.top[c].height for c in data.shown)
    named = ["node_id", "feature", *(["label"] if labelled else []), "effect"]
    top: list[tuple[str | None, pl.DataFrame]] = [(labels[c], data.top[c].select(
        *named,
        pl.col("feature").replace_strict(data.shared_counts, default=None, return_dtype=pl.Int64).alias("in circuits"),
    )) for c in data.shown] if len(data.ids) > 1 else [(labels[c], data.top[c].select(*named)) for c in data.shown]
    errors = pl.DataFrame({
        "circuit": [labels[c] for c in data.shown],
        "error share": [data.overall_error_share(c) for c in data.shown],
        "highest site": [_highest_error_site(data.error_share[c]) for c in data.shown],
    })
    evaluation = pl.DataFrame(
        [{"circuit": labels[c], "node threshold": p.get("node_threshold"), "nodes": p.get("n_nodes"),
          "faithfulness": p.get("faithfulness"), "completeness": p.get("completeness")}
         for c in data.ids for p in data.evaluation[c]],
        schema={"circuit": pl.String, "node threshold": pl.Float64, "nodes": pl.Int64, "faithfulness": pl.Float64,
                "completeness": pl.Float64},
    )
    if data.large:  # hundreds of circuits: distributions and the largest circuits, not one row per circuit
        overlap = overlap.head(MAX_OVERLAP_ROWS)
        evaluation = evaluation.group_by("node threshold").agg(
            pl.len().alias("circuits"), pl.col("nodes").median().alias("median nodes"),
            pl.col("faithfulness").median().alias("median faithfulness"),
            pl.col("completeness").median().alias("median completeness"),
        ).sort("node threshold")
    shared_tables: list[tuple[str | None, pl.DataFrame]] = [(None, shared)]
    if data.shared_histogram.height and len(data.ids) > 2:
        shared_tables.append(("How many features are shared by how many circuits", data.shared_histogram))
    return {"overlap": [(None, overlap)], "shared": shared_tables, "layers": [], "top": top,
            "errors": [(None, errors)], "faithfulness": [(None, evaluation)]}


def _highest_error_site(frame: pl.DataFrame) -> str:
    sites = frame.filter((pl.col("site") != "all") & pl.col("error_share").is_not_null())
    if sites.height == 0:
        return ""
    row = sites.sort("error_share", descending=True).row(0, named=True)
    return f"{row['site_name']} ({row['error_share']:.0%})"


def _circuit_table(data: ComparisonData) -> pl.DataFrame:
    frame = data.circuits
    return frame.select(pl.col("label").alias("circuit"), "id", "task", "model", "method", "n_nodes", "n_edges")


def _fmt(value: Any) -> str:
    if value is None:
        return "·"
    if isinstance(value, float):
        return "·" if math.isnan(value) else f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, list):
        return ", ".join(_fmt(v) for v in value)
    return str(value)


def _md_table(frame: pl.DataFrame) -> str:
    if frame.height == 0:
        return "_(none)_\n"
    escape = lambda s: s.replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(escape(c) for c in frame.columns) + " |", "|" + "---|" * frame.width]
    lines += ["| " + " | ".join(escape(_fmt(v)) for v in row) + " |" for row in frame.iter_rows()]
    return "\n".join(lines) + "\n"


def _html_table(frame: pl.DataFrame) -> str:
    if frame.height == 0:
        return "<p class='none'>(none)</p>"
    numeric = [dtype.is_numeric() for dtype in frame.dtypes]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    body = "".join(
        "<tr>" + "".join(f"<td class='{'num' if num else ''}{_sign_class(v)}'>{html.escape(_fmt(v))}</td>"
                         for v, num in zip(row, numeric)) + "</tr>"
        for row in frame.iter_rows()
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _sign_class(value: Any) -> str:
    return "" if not isinstance(value, float) or math.isnan(value) else (" pos" if value > 0 else " neg" if value < 0 else "")


def markdown(data: ComparisonData, summary: list[str], images: dict[str, Path | None]) -> str:
    parts = [f"# Circuit comparison: {', '.join(sorted(set(data.circuits['task'])))}\n\n",
             f"_Generated {_now()} by sfc-graph (`sfc compare`)._\n\n", "## Summary\n\n",
             "".join(f"- {line}\n" for line in summary), "\n## Circuits\n\n", _md_table(_circuit_table(data))]
    tables = _tables(data)
    for key, title, blurb in SECTIONS:
        if key == "overlap" and len(data.ids) < 2:
            continue
        parts.append(f"\n## {title}\n\n{blurb}\n\n")
        image = images.get(key if key != "shared" else "")
        if image is not None:
            parts.append(f"![{title}]({image.name})\n\n")
        for heading, frame in tables[key]:
            if heading:
                parts.append(f"### {heading}\n\n")
            parts.append(_md_table(frame) + "\n")
    return "".join(parts)


CSS = """
body{font-family:-apple-system,BlinkMacSystemFont,"Segoe UI",Helvetica,Arial,sans-serif;max-width:1180px;
margin:2em auto;padding:0 1.2em;color:#1f2328;line-height:1.45}
h1{font-size:1.7em;border-bottom:2px solid #d0d7de;padding-bottom:.3em}
h2{font-size:1.3em;margin-top:1.8em;border-bottom:1px solid #d0d7de;padding-bottom:.2em}
h3{font-size:1.05em;margin-bottom:.3em}
.meta{color:#656d76;font-size:.9em}
.summary{background:#f6f8fa;border-left:4px solid #0969da;padding:.6em 1.2em;border-radius:4px}
.summary li{margin:.25em 0}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0 1em}
th,td{border:1px solid #d0d7de;padding:3px 8px;text-align:left}
th{background:#f6f8fa}
tr:nth-child(even) td{background:#fbfcfd}
td.num{text-align:right;font-variant-numeric:tabular-nums}
td.pos{color:#1d4f91}
td.neg{color:#a40e26}
figure{margin:1em 0}
img{max-width:100%;height:auto;border:1px solid #eaeef2}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:0 1.5em}
p.blurb{color:#424a53}
p.none{color:#656d76;font-style:italic}
code{background:#f6f8fa;padding:0 .3em;border-radius:3px}
"""


def html_page(data: ComparisonData, summary: list[str], images: dict[str, Path | None]) -> str:
    title = f"Circuit comparison: {', '.join(sorted(set(data.circuits['task'])))}"
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p class='meta'>Generated {_now()} by sfc-graph (<code>sfc compare</code>) · {len(data.ids)} circuit(s)</p>",
        "<h2>Summary</h2><ul class='summary'>",
        "".join(f"<li>{html.escape(line)}</li>" for line in summary), "</ul>",
        "<h2>Circuits</h2>", _html_table(_circuit_table(data)),
    ]
    tables = _tables(data)
    for key, heading, blurb in SECTIONS:
        if key == "overlap" and len(data.ids) < 2:
            continue
        parts.append(f"<h2 id='{key}'>{html.escape(heading)}</h2><p class='blurb'>{html.escape(blurb)}</p>")
        image = images.get(key if key != "shared" else "")
        if image is not None:
            encoded = base64.b64encode(image.read_bytes()).decode("ascii")
            parts.append(f"<figure><img alt='{html.escape(heading)}' src='data:image/png;base64,{encoded}'></figure>")
        grid = len(tables[key]) > 1
        if grid:
            parts.append("<div class='grid'>")
        for sub, frame in tables[key]:
            parts.append(("<div>" if grid else "") + (f"<h3>{html.escape(sub)}</h3>" if sub else "")
                         + _html_table(frame) + ("</div>" if grid else ""))
        if grid:
            parts.append("</div>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
