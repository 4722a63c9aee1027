"""The report's figures, drawn with matplotlib from :class:`~.data.ComparisonData` and saved as PNG."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from .. import naming
from .data import ComparisonData, site_order

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

DPI = 120


def write_figures(data: ComparisonData, out: Path) -> dict[str, Path | None]:
    return {
        "overlap": _save(_overlap_figure(data), out / "overlap.png") if len(data.ids) > 1 else None,
        "layers": _save(_layer_figure(data), out / "layer_profile.png"),
        "top": _save(_top_figure(data), out / "top_features.png"),
        "errors": _save(_error_figure(data), out / "error_share.png"),
        "faithfulness": _save(_faithfulness_figure(data), out / "faithfulness.png") if any(data.evaluation.values())
        else None,
    }


def _save(figure: "Figure", path: Path) -> Path:
    figure.savefig(path, dpi=DPI, bbox_inches="tight", facecolor="white")
    return path


def _figure(width: float, height: float, ncols: int = 1) -> tuple["Figure", list]:
    # Figure objects without pyplot: no global backend state, the Agg canvas is used to save.
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    axes = figure.subplots(1, ncols, squeeze=False)[0]
    return figure, list(axes)


def _colours(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _overlap_matrix(data: ComparisonData, column: str) -> list[list[float]]:
    index = {c: i for i, c in enumerate(data.ids)}
    n = len(index)
    matrix = [[1.0 if i == j else math.nan for j in range(n)] for i in range(n)]
    for row in data.overlap.iter_rows(named=True):
        a, b = index.get(row["circuit_a"]), index.get(row["circuit_b"])
        if a is not None and b is not None and row[column] is not None:
            matrix[a][b] = matrix[b][a] = float(row[column])
    return matrix


def _overlap_figure(data: ComparisonData) -> "Figure":
    import numpy as np
    from matplotlib import colormaps

    n = len(data.ids)
    side = min(11.0, 2.4 + 0.6 * n)
    figure, axes = _figure(2 * side + 1.6, side, ncols=2)
    labels = [data.labels[c] for c in data.ids]
    cmap = colormaps["viridis"].with_extremes(bad="#e8e8e8")
    for ax, column, title in zip(axes, ("jaccard", "weighted_overlap"),
                                 ("Jaccard (shared nodes)", "weighted overlap (Σ min |e| / Σ max |e|)")):
        matrix = np.array(_overlap_matrix(data, column), dtype=float)
        np.fill_diagonal(matrix, np.nan)  # self-overlap is 1 by definition; keep it out of the colour scale
        top = float(np.nanmax(matrix)) if np.isfinite(matrix).any() else 1.0
        image = ax.imshow(np.ma.masked_invalid(matrix), vmin=0.0, vmax=max(top, 1e-9), cmap=cmap)
        if n <= 60:
            ax.set_xticks(range(n), labels, rotation=40 if n <= 24 else 90, ha="right", fontsize=9 if n <= 24 else 5)
            ax.set_yticks(range(n), labels, fontsize=9 if n <= 24 else 5)
        else:  # hundreds of circuits: the picture is the block structure, not the names
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(f"{n} circuits, ordered by clustering their overlap")
        ax.set_title(title, fontsize=11)
        if n <= 14:
            for i in range(n):
                for j in range(n):
                    value = matrix[i][j]
                    text = "—" if i == j else ("" if math.isnan(value) else f"{value:.2f}")
                    ax.text(j, i, text, ha="center", va="center", fontsize=8,
                            color="black" if i == j or value > 0.6 * top else "white")
        figure.colorbar(image, ax=ax, shrink=0.75, label="overlap (scale: 0 to the largest pair)")
    ordered = " — similar circuits side by side (hierarchical clustering)" if data.large else ""
    figure.suptitle(f"How much the circuits overlap (brighter = more shared){ordered}", fontsize=13)
    return figure


def _layer_figure(data: ComparisonData) -> "Figure":
    sites = sorted({s for f in data.profiles.values() for s in f["site_name"].to_list()}, key=site_order)
    from matplotlib.figure import Figure

    figure = Figure(figsize=(max(8.0, 0.55 * len(sites) + 4), 6.0), layout="constrained")
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=[2, 1])
    x = {s: i for i, s in enumerate(sites)}
    if data.large:
        _layer_distribution(data, sites, top, bottom)
    for colour, cid in zip(_colours(len(data.ids)), [] if data.large else data.ids):
        frame = data.profiles[cid]
        xs = [x[s] for s in frame["site_name"]]
        top.plot(xs, frame["share"].to_list(), marker="o", color=colour, label=data.labels[cid], lw=1.8)
        bottom.plot(xs, frame["n_nodes"].to_list(), marker="s", color=colour, lw=1.2, ls="--")
    top.set_ylabel("share of circuit's |effect|")
    _percent_axis(top)
    top.set_ylim(bottom=0)
    bottom.set_ylabel("nodes")
    bottom.set_ylim(bottom=0)
    bottom.set_xticks(range(len(sites)), sites, rotation=45, ha="right", fontsize=9)
    bottom.set_xlabel("site (forward order: embedding → output)")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
        for i, site in enumerate(sites):  # light bands mark where a new layer starts
            if site.startswith("attn_") and i:
                ax.axvline(i - 0.5, color="#bbbbbb", lw=0.8, zorder=0)
    figure.legend(loc="outside right upper", fontsize=8, title="circuit", title_fontsize=8)
    figure.suptitle("Where each circuit's effect sits, layer by layer", fontsize=13)
    return figure


def _layer_distribution(data: ComparisonData, sites: list[str], top, bottom) -> None:
    """Many circuits: the median share and node count per site, with the band of the middle half."""
    import numpy as np

    share = np.zeros((len(data.ids), len(sites)))
    nodes = np.zeros_like(share)
    column = {s: j for j, s in enumerate(sites)}
    for i, cid in enumerate(data.ids):
        frame = data.profiles[cid]
        for site, value, count in zip(frame["site_name"], frame["share"], frame["n_nodes"]):
            share[i, column[site]], nodes[i, column[site]] = value, count
    xs = range(len(sites))
    for ax, values, marker in ((top, share, "o"), (bottom, nodes, "s")):
        low, mid, high = np.percentile(values, [25, 50, 75], axis=0)
        ax.fill_between(xs, low, high, color="#4c72b0", alpha=0.25, label="middle half of the circuits")
        ax.plot(xs, mid, marker=marker, color="#4c72b0", lw=1.8, label=f"median of {len(data.ids)} circuits")


def _top_figure(data: ComparisonData) -> "Figure":
    n = len(data.shown)
    ncols = min(n, 3)
    nrows = math.ceil(n / ncols)
    rows_per_panel = max((f.height for f in data.top.values()), default=1) or 1
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4.6 * ncols, (0.26 * rows_per_panel + 1.1) * nrows), layout="constrained")
    axes = figure.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, cid in zip(axes, data.shown):
        frame = data.top[cid]
        names = [_feature_label(r, data.shared_counts) for r in frame.iter_rows(named=True)][::-1]
        effects = frame["effect"].to_list()[::-1]
        ax.barh(range(len(effects)), effects, color=["#2166ac" if e >= 0 else "#b2182b" for e in effects])
        ax.set_yticks(range(len(effects)), names, fontsize=8)
        ax.axvline(0, color="black", lw=0.6)
        ax.set_title(data.labels[cid], fontsize=10)
        ax.tick_params(axis="x", labelsize=8)
        ax.grid(axis="x", alpha=0.3)
        if not effects:
            ax.text(0.5, 0.5, "no feature nodes", ha="center", va="center", transform=ax.transAxes)
    for ax in axes[n:]:
        ax.set_visible(False)
    note = "; (in k): also in other circuits here, k circuits in all" if data.shared_counts else ""
    which = f"the {n} largest of {len(data.ids)} circuits" if data.large else "circuit"
    figure.suptitle(f"Top features per {which} (effect on the metric; blue +, red −{note})", fontsize=12)
    return figure


def _error_figure(data: ComparisonData) -> "Figure":
    """A circuits × sites heatmap of error share, and each circuit's overall share as bars (for many circuits:
    the distribution of the overall share, and the median per site)."""
    import numpy as np
    from matplotlib import colormaps
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    if data.large:
        return _error_distribution(data)

    frames = {c: f.filter(pl.col("site") != "all") for c, f in data.error_share.items()}
    sites = sorted({s for f in frames.values() for s in f["site_name"].to_list()} - {"output"}, key=site_order)
    n = len(data.ids)
    figure, (by_site, overall) = _figure(max(11.0, 0.62 * len(sites) + 7), max(3.6, 0.42 * n + 2.0), ncols=2)
    engine = figure.get_layout_engine()
    if isinstance(engine, ConstrainedLayoutEngine):
        engine.set(wspace=0.08)
    matrix = np.full((n, len(sites)), np.nan)
    column = {s: j for j, s in enumerate(sites)}
    for i, cid in enumerate(data.ids):
        for site, share in zip(frames[cid]["site_name"], frames[cid]["error_share"]):
            if site in column and share is not None:
                matrix[i, column[site]] = share
    top = max(0.1, float(np.nanmax(matrix)) if np.isfinite(matrix).any() else 0.1)
    cmap = colormaps["Oranges"].with_extremes(bad="#f2f2f2")
    image = by_site.imshow(np.ma.masked_invalid(matrix), vmin=0.0, vmax=top, cmap=cmap, aspect="auto")
    by_site.set_xticks(range(len(sites)), sites, rotation=45, ha="right", fontsize=9)
    by_site.set_yticks(range(n), [data.labels[c] for c in data.ids], fontsize=9)
    if n * len(sites) <= 400:
        for i in range(n):
            for j in range(len(sites)):
                if np.isfinite(matrix[i, j]):
                    by_site.text(j, i, f"{matrix[i, j]:.0%}", ha="center", va="center", fontsize=7,
                                 color="white" if matrix[i, j] > 0.6 * top else "black")
    by_site.set_title("per site (share of the site's |effect|)", fontsize=11)
    figure.colorbar(image, ax=by_site, shrink=0.8, format=_percent_formatter())
    shares = [data.overall_error_share(c) for c in data.ids]
    colours = _colours(n)
    overall.barh(range(n), [s or 0.0 for s in shares], color=colours)
    overall.set_yticks(range(n), [data.labels[c] for c in data.ids], fontsize=9)
    overall.invert_yaxis()  # same order as the heatmap's rows
    overall.set_xlim(0, min(1.0, max([s or 0.0 for s in shares] + [0.05]) * 1.3))
    overall.xaxis.set_major_formatter(_percent_formatter())
    overall.set_title("whole circuit", fontsize=11)
    overall.grid(axis="x", alpha=0.3)
    for i, share in enumerate(shares):
        if share is not None:
            overall.text(share, i, f" {share:.0%}", va="center", fontsize=8)
    figure.suptitle("How much of the effect the SAE error terms carry (lower: the dictionaries explain more)",
                    fontsize=12)
    return figure


def _error_distribution(data: ComparisonData) -> "Figure":
    import numpy as np

    figure, (hist, by_site) = _figure(12.0, 4.0, ncols=2)
    shares = [s for s in (data.overall_error_share(c) for c in data.ids) if s is not None]
    hist.hist(shares, bins=20, range=(0.0, 1.0), color="#dd8452")
    hist.xaxis.set_major_formatter(_percent_formatter())
    hist.set_xlabel("error share of the whole circuit")
    hist.set_ylabel("circuits")
    frames = [f.filter(pl.col("site") != "all") for f in data.error_share.values()]
    sites = sorted({s for f in frames for s in f["site_name"].to_list()} - {"output"}, key=site_order)
    medians = []
    for site in sites:
        values = [v for f in frames for n, v in zip(f["site_name"], f["error_share"]) if n == site and v is not None]
        medians.append(float(np.median(values)) if values else 0.0)
    by_site.bar(range(len(sites)), medians, color="#dd8452")
    by_site.set_xticks(range(len(sites)), sites, rotation=45, ha="right", fontsize=9)
    by_site.yaxis.set_major_formatter(_percent_formatter())
    by_site.set_title("median per site", fontsize=11)
    figure.suptitle(f"How much of the effect the SAE error terms carry, over {len(data.ids)} circuits", fontsize=12)
    return figure


def _faithfulness_figure(data: ComparisonData) -> "Figure":
    figure, (faith, complete) = _figure(12.0, 4.4, ncols=2)
    by_nodes = all(p.get("n_nodes") for points in data.evaluation.values() for p in points)
    for colour, cid in zip(_colours(len(data.ids)), data.ids):
        points = data.evaluation[cid]
        if not points:
            continue
        xs = [p.get("n_nodes") if by_nodes else p.get("node_threshold") for p in points]
        for ax, key in ((faith, "faithfulness"), (complete, "completeness")):
            pairs = [(x, p.get(key)) for x, p in zip(xs, points) if x is not None and p.get(key) is not None]
            if pairs and data.large:  # many circuits: thin grey lines, the bundle is the message
                ax.plot([a for a, _ in pairs], [b for _, b in pairs], color="#4c72b0", lw=0.6, alpha=0.25)
            elif pairs:
                ax.plot([a for a, _ in pairs], [b for _, b in pairs], marker="o", color=colour, lw=1.6,
                        label=data.labels[cid])
    for ax, key, ideal in ((faith, "faithfulness", 1.0), (complete, "completeness", 0.0)):
        ax.axhline(ideal, color="black", lw=0.8, ls=":")
        ax.set_xscale("log")
        if not by_nodes:
            ax.invert_xaxis()
        _plain_log_ticks(ax, [p.get("n_nodes") if by_nodes else p.get("node_threshold")
                              for points in data.evaluation.values() for p in points])
        ax.set_xlabel("nodes in the circuit" if by_nodes else "node threshold (lower: larger circuit)")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3, which="both")
    faith.set_title("faithfulness (1 = the circuit alone does the task)", fontsize=10)
    complete.set_title("completeness (0 = nothing left without the circuit)", fontsize=10)
    if not data.large:
        faith.legend(fontsize=8)
    figure.suptitle("Faithfulness and completeness at the stored thresholds", fontsize=12)
    return figure


def _plain_log_ticks(ax, values: list) -> None:
    """Label a log axis with the measured values themselves (``12``, ``40``), not powers of ten."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    ticks = sorted({float(v) for v in values if v})
    if 0 < len(ticks) <= 12:
        ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _percent_formatter():
    from matplotlib.ticker import PercentFormatter

    return PercentFormatter(1.0)


def _percent_axis(ax) -> None:
    ax.yaxis.set_major_formatter(_percent_formatter())


def _feature_label(row: dict[str, Any], shared_counts: dict[str, int]) -> str:
    label = naming.node_key(row["node_id"], row.get("position"))
    count = shared_counts.get(row.get("feature") or "")
    return f"{label}  (in {count})" if count else label
