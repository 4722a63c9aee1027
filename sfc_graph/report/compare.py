"""Cross-task comparison reports: how circuits for several tasks overlap, which features they share, where
their effects sit, how much the SAE errors carry and how faithful the circuits are.

Every number comes from the named query library (``circuit-overlap``, ``shared-features``,
``feature-circuits``, ``layer-profile``, ``top-nodes``, ``error-share``) and from the manifests' stored
``evaluation``; this module only arranges and draws them. Output: ``report.md`` (plots as PNG files
beside it) and ``report.html`` (the same plots embedded as data URIs, so the file can be mailed alone).
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import polars as pl

from ..errors import CircuitNotFound, ReportError
from ..sites import Site

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from ..store.base import BaseStore

log = logging.getLogger(__name__)

TOP_K = 10  # top features listed per circuit
MAX_SHARED_ROWS = 25  # shared features listed in the table
MAX_MATRIX_CIRCUITS = 8  # beyond this the shared-features table lists effects, not one column per circuit
FAITHFUL_ENOUGH = 0.8  # the summary reports the smallest stored circuit reaching this faithfulness
DPI = 120


@dataclass(frozen=True)
class ComparisonReport:
    """What :func:`build_comparison_report` wrote."""

    out_dir: Path
    markdown: Path
    html: Path
    images: tuple[Path, ...]
    circuits: tuple[str, ...]
    summary: tuple[str, ...]


@dataclass
class _Data:
    circuits: pl.DataFrame  # id, task, model, method, n_nodes, n_edges, label
    overlap: pl.DataFrame  # circuit_a, circuit_b, jaccard, weighted_overlap
    shared: pl.DataFrame  # feature, site, layer, count, effects (+ tasks, one column per circuit label)
    n_shared: int  # features in at least two of the circuits
    shared_counts: dict[str, int] = field(default_factory=dict)  # feature -> circuits (of these) containing it
    profiles: dict[str, pl.DataFrame] = field(default_factory=dict)  # circuit id -> site, n_nodes, abs_effect, share
    top: dict[str, pl.DataFrame] = field(default_factory=dict)
    error_share: dict[str, pl.DataFrame] = field(default_factory=dict)  # circuit id -> site, error_share
    evaluation: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def ids(self) -> list[str]:
        return self.circuits["id"].to_list()

    @property
    def labels(self) -> dict[str, str]:
        return dict(zip(self.circuits["id"], self.circuits["label"]))

    def overall_error_share(self, circuit_id: str) -> float | None:
        frame = self.error_share.get(circuit_id)
        if frame is None or frame.height == 0:
            return None
        row = frame.filter(pl.col("site") == "all")
        return float(row["error_share"][0]) if row.height and row["error_share"][0] is not None else None


# --- the entry point -----------------------------------------------------------------------------------
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
    data = _gather(store, circuits, top_k=top_k)
    images = _plots(data, out)
    summary = _summary(data)
    markdown = out / "report.md"
    markdown.write_text(_markdown(data, summary, images), encoding="utf-8")
    page = out / "report.html"
    page.write_text(_html(data, summary, images), encoding="utf-8")
    log.info("wrote %s and %s", markdown, page)
    return ComparisonReport(out, markdown, page, tuple(p for p in images.values() if p is not None),
                            tuple(data.ids), tuple(summary))


def resolve_selectors(store: "BaseStore", selectors: Sequence[str]) -> pl.DataFrame:
    """The store's circuit rows (``circuits()``) that ``selectors`` name, in the order named, each once.

    A selector is a circuit id or a task name (all of that task's circuits); ids win over task names.
    """
    if not selectors:
        raise ReportError("name at least one circuit id or task to compare")
    known = store.circuits()
    chosen: list[str] = []
    for selector in selectors:
        if selector in known["id"]:
            ids = [selector]
        else:
            ids = known.filter(pl.col("task") == selector)["id"].to_list()
        if not ids:
            tasks = sorted(set(known["task"].to_list()))
            hint = f"known tasks: {', '.join(tasks[:8])}{' …' if len(tasks) > 8 else ''}" if tasks else "the store is empty"
            raise CircuitNotFound(f"{selector!r} is neither a circuit id nor a task in the store ({hint})")
        chosen += [i for i in ids if i not in chosen]
    rows = known.filter(pl.col("id").is_in(chosen))
    rows = rows.with_columns(pl.col("id").replace_strict({c: i for i, c in enumerate(chosen)}).alias("_order"))
    rows = rows.sort("_order").drop("_order")
    return rows.with_columns(pl.Series("label", _labels(rows)))


def _labels(rows: pl.DataFrame) -> list[str]:
    """Short names for plots: the task when it names one circuit here, else task plus a short id."""
    tasks = rows["task"].to_list()
    ids = rows["id"].to_list()
    labels = []
    for task, cid in zip(tasks, ids):
        labels.append(task if tasks.count(task) == 1 else f"{task} · {cid[:8]}")
    if len(set(labels)) < len(labels):  # ids sharing a prefix: fall back to whole ids
        labels = [f"{t} · {c}" if tasks.count(t) > 1 else t for t, c in zip(tasks, ids)]
    return labels


# --- gathering ------------------------------------------------------------------------------------------
def _gather(store: "BaseStore", circuits: pl.DataFrame, *, top_k: int) -> _Data:
    ids = circuits["id"].to_list()
    labels = dict(zip(ids, circuits["label"]))
    if len(ids) > 1:
        overlap = store.query("circuit-overlap", circuits=ids)
        shared = store.query("shared-features", circuits=ids, min_count=2)
    else:
        overlap = pl.DataFrame(schema={"circuit_a": pl.String, "circuit_b": pl.String, "jaccard": pl.Float64,
                                       "weighted_overlap": pl.Float64})
        shared = pl.DataFrame(schema={"feature": pl.String, "site": pl.String, "layer": pl.Int64, "count": pl.Int64,
                                      "effects": pl.List(pl.Float64)})
    n_shared = shared.height
    shared_counts = dict(zip(shared["feature"].to_list(), shared["count"].to_list()))
    shared = _rank_shared(shared).head(MAX_SHARED_ROWS)
    shared = _with_circuit_columns(store, shared, ids, labels, dict(zip(ids, circuits["task"])))
    data = _Data(circuits=circuits, overlap=overlap, shared=shared, n_shared=n_shared, shared_counts=shared_counts)
    for cid in ids:
        data.profiles[cid] = _profile(store.query("layer-profile", circuit=cid))
        data.top[cid] = store.query("top-nodes", circuit=cid, k=top_k, kind="feature")
        data.error_share[cid] = _with_site_names(store.query("error-share", circuit=cid))
        data.evaluation[cid] = _evaluation(store, cid)
    return data


def _rank_shared(shared: pl.DataFrame) -> pl.DataFrame:
    """Most widely shared first, then by total |effect| across the circuits."""
    if shared.height == 0:
        return shared
    total = pl.col("effects").list.eval(pl.element().abs()).list.sum()
    return shared.with_columns(total.alias("_total")).sort(["count", "_total"], descending=True).drop("_total")


def _with_circuit_columns(store, shared: pl.DataFrame, ids: list[str], labels: dict[str, str],
                          tasks: dict[str, str]) -> pl.DataFrame:
    """Add ``tasks`` (how many distinct tasks use the feature) and, for a few circuits, one effect column each.

    ``shared-features`` lists a feature's effects without saying which circuit each belongs to;
    ``feature-circuits`` does, so it is asked for the listed features only.
    """
    if shared.height == 0:
        return shared.with_columns(pl.lit(0, dtype=pl.Int64).alias("tasks"))
    per_circuit: list[dict[str, float]] = []
    n_tasks: list[int] = []
    for feature in shared["feature"].to_list():
        users = store.query("feature-circuits", feature=feature).filter(pl.col("circuit").is_in(ids))
        effects = users.group_by("circuit").agg(pl.col("effect").sum())
        per_circuit.append(dict(zip(effects["circuit"], effects["effect"])))
        n_tasks.append(len({tasks[c] for c in effects["circuit"]}))
    shared = shared.with_columns(pl.Series("tasks", n_tasks, dtype=pl.Int64))
    if len(ids) <= MAX_MATRIX_CIRCUITS:
        shared = shared.with_columns(
            [pl.Series(labels[c], [row.get(c) for row in per_circuit], dtype=pl.Float64) for c in ids]
        )
    return shared


def _site_name(site: str | None, layer: int | None) -> str:
    if site is None:
        return "?"
    if site in ("embed", "output", "all") or "_" in site or layer is None or layer < 0:
        return site
    return f"{site}_{layer}"


def _site_order(name: str) -> tuple[int, int]:
    kind, _, layer = name.rpartition("_")
    if kind in ("attn", "mlp", "resid") and layer.isdigit():
        return Site(kind, int(layer)).order
    return {"embed": (-1, 0), "output": (10**6, 4)}.get(name, (10**7, 0))


def _with_site_names(frame: pl.DataFrame) -> pl.DataFrame:
    names = [_site_name(s, l) for s, l in zip(frame["site"], frame["layer"])]
    return frame.with_columns(pl.Series("site_name", names, dtype=pl.String))


def _profile(frame: pl.DataFrame) -> pl.DataFrame:
    """A layer profile in forward order without the output node, with each site's share of the |effect|."""
    frame = _with_site_names(frame).filter(pl.col("site_name") != "output")
    frame = frame.group_by("site_name").agg(pl.col("n_nodes").sum(), pl.col("abs_effect").sum())
    total = float(frame["abs_effect"].sum() or 0.0)
    frame = frame.with_columns((pl.col("abs_effect") / total if total else pl.lit(0.0)).alias("share"))
    order = sorted(frame["site_name"].to_list(), key=_site_order)
    return frame.with_columns(pl.col("site_name").replace_strict({s: i for i, s in enumerate(order)}).alias("_o")) \
        .sort("_o").drop("_o")


def _evaluation(store: "BaseStore", circuit_id: str) -> list[dict[str, Any]]:
    manifest = store.manifest(circuit_id)
    points = [p for p in manifest.get("evaluation") or [] if isinstance(p, dict)]
    return sorted(points, key=lambda p: (p.get("n_nodes") is None, p.get("n_nodes") or 0,
                                         -(p.get("node_threshold") or 0)))


# --- plots ----------------------------------------------------------------------------------------------
def _plots(data: _Data, out: Path) -> dict[str, Path | None]:
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


def _overlap_matrix(data: _Data, column: str) -> list[list[float]]:
    index = {c: i for i, c in enumerate(data.ids)}
    n = len(index)
    matrix = [[1.0 if i == j else math.nan for j in range(n)] for i in range(n)]
    for row in data.overlap.iter_rows(named=True):
        a, b = index.get(row["circuit_a"]), index.get(row["circuit_b"])
        if a is not None and b is not None and row[column] is not None:
            matrix[a][b] = matrix[b][a] = float(row[column])
    return matrix


def _overlap_figure(data: _Data) -> "Figure":
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
        ax.set_xticks(range(n), labels, rotation=40, ha="right", fontsize=9)
        ax.set_yticks(range(n), labels, fontsize=9)
        ax.set_title(title, fontsize=11)
        if n <= 14:
            for i in range(n):
                for j in range(n):
                    value = matrix[i][j]
                    text = "—" if i == j else ("" if math.isnan(value) else f"{value:.2f}")
                    ax.text(j, i, text, ha="center", va="center", fontsize=8,
                            color="black" if i == j or value > 0.6 * top else "white")
        figure.colorbar(image, ax=ax, shrink=0.75, label="overlap (scale: 0 to the largest pair)")
    figure.suptitle("How much the circuits overlap (brighter = more shared)", fontsize=13)
    return figure


def _layer_figure(data: _Data) -> "Figure":
    sites = sorted({s for f in data.profiles.values() for s in f["site_name"].to_list()}, key=_site_order)
    from matplotlib.figure import Figure

    figure = Figure(figsize=(max(8.0, 0.55 * len(sites) + 4), 6.0), layout="constrained")
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=[2, 1])
    x = {s: i for i, s in enumerate(sites)}
    for colour, cid in zip(_colours(len(data.ids)), data.ids):
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


def _top_figure(data: _Data) -> "Figure":
    n = len(data.ids)
    ncols = min(n, 3)
    nrows = math.ceil(n / ncols)
    rows_per_panel = max((f.height for f in data.top.values()), default=1) or 1
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4.6 * ncols, (0.26 * rows_per_panel + 1.1) * nrows), layout="constrained")
    axes = figure.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, cid in zip(axes, data.ids):
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
    figure.suptitle(f"Top features per circuit (effect on the metric; blue +, red −{note})", fontsize=12)
    return figure


def _error_figure(data: _Data) -> "Figure":
    """A circuits × sites heatmap of error share, and each circuit's overall share as bars."""
    import numpy as np
    from matplotlib import colormaps

    frames = {c: f.filter(pl.col("site") != "all") for c, f in data.error_share.items()}
    sites = sorted({s for f in frames.values() for s in f["site_name"].to_list()} - {"output"}, key=_site_order)
    n = len(data.ids)
    figure, (by_site, overall) = _figure(max(11.0, 0.62 * len(sites) + 7), max(3.6, 0.42 * n + 2.0), ncols=2)
    figure.get_layout_engine().set(wspace=0.08)
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


def _faithfulness_figure(data: _Data) -> "Figure":
    figure, (faith, complete) = _figure(12.0, 4.4, ncols=2)
    by_nodes = all(p.get("n_nodes") for points in data.evaluation.values() for p in points)
    for colour, cid in zip(_colours(len(data.ids)), data.ids):
        points = data.evaluation[cid]
        if not points:
            continue
        xs = [p.get("n_nodes") if by_nodes else p.get("node_threshold") for p in points]
        for ax, key in ((faith, "faithfulness"), (complete, "completeness")):
            pairs = [(x, p.get(key)) for x, p in zip(xs, points) if x is not None and p.get(key) is not None]
            if pairs:
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
    label = row["node_id"] + (f" @{row['position']}" if row.get("position", -1) not in (-1, None) else "")
    count = shared_counts.get(row.get("feature") or "")
    return f"{label}  (in {count})" if count else label


# --- the summary ----------------------------------------------------------------------------------------
def _summary(data: _Data) -> list[str]:
    labels = data.labels
    lines = []
    tasks = sorted(set(data.circuits["task"].to_list()))
    lines.append(f"{len(data.ids)} circuit(s) over {len(tasks)} task(s): {', '.join(tasks)}.")
    ranked = data.overlap.drop_nulls(["jaccard", "weighted_overlap"]).sort("jaccard", descending=True)
    if ranked.height:
        best, worst = ranked.row(0, named=True), ranked.row(-1, named=True)
        lines.append(
            f"Most similar pair: {labels.get(best['circuit_a'])} and {labels.get(best['circuit_b'])} "
            f"(Jaccard {best['jaccard']:.2f}, weighted overlap {best['weighted_overlap']:.2f})"
            + (f"; least similar: {labels.get(worst['circuit_a'])} and {labels.get(worst['circuit_b'])} "
               f"(Jaccard {worst['jaccard']:.2f}, weighted {worst['weighted_overlap']:.2f})." if ranked.height > 1 else ".")
        )
        if ranked.height > 1:
            lines.append(f"Mean pairwise Jaccard {ranked['jaccard'].mean():.2f}, "
                         f"mean weighted overlap {ranked['weighted_overlap'].mean():.2f}.")
    if len(data.ids) > 1:
        if data.n_shared:
            in_all = data.shared.filter(pl.col("count") >= len(data.ids)).height
            top = data.shared.head(3).iter_rows(named=True)
            named = "; ".join(f"{r['feature']} ({_site_name(r['site'], r['layer'])}, in {r['count']} circuits"
                              f"{', ' + str(r['tasks']) + ' tasks' if r.get('tasks') else ''})" for r in top)
            lines.append(f"{data.n_shared} feature(s) appear in at least two of the circuits"
                         + (f", {in_all} in all {len(data.ids)}" if in_all else "") + f". Most widely shared: {named}.")
        else:
            lines.append("No feature appears in more than one of the circuits.")
    peaks = []
    for cid in data.ids:
        frame = data.profiles[cid]
        if frame.height:
            peak = frame.sort("share", descending=True).row(0, named=True)
            peaks.append(f"{labels[cid]}: {peak['site_name']} ({peak['share']:.0%})")
    if peaks:
        lines.append("Largest share of |effect| by site — " + "; ".join(peaks) + ".")
    shares = {cid: data.overall_error_share(cid) for cid in data.ids}
    shares = {c: s for c, s in shares.items() if s is not None}
    if shares:
        high = max(shares, key=shares.get)
        low = min(shares, key=shares.get)
        text = (f"Error nodes carry {shares[low]:.0%} ({labels[low]}) to {shares[high]:.0%} ({labels[high]}) of the "
                "|effect|" if len(shares) > 1 else f"Error nodes carry {shares[high]:.0%} of the |effect| in {labels[high]}")
        if shares[high] > 0.5:
            text += f"; above half in {labels[high]}, whose dictionaries leave much of the mechanism unexplained"
        lines.append(text + ".")
    faithful = []
    for cid in data.ids:
        points = [p for p in data.evaluation[cid] if p.get("faithfulness") is not None]
        if not points:
            continue
        enough = [p for p in points if p["faithfulness"] >= FAITHFUL_ENOUGH and p.get("n_nodes")]
        if enough:
            p = min(enough, key=lambda q: q["n_nodes"])
            faithful.append(f"{labels[cid]} reaches faithfulness {p['faithfulness']:.2f} with {p['n_nodes']} nodes")
        else:
            best = max(points, key=lambda q: q["faithfulness"])
            faithful.append(f"{labels[cid]} peaks at faithfulness {best['faithfulness']:.2f}")
    if faithful:
        lines.append("; ".join(faithful) + f" (threshold for 'faithful enough': {FAITHFUL_ENOUGH}).")
    else:
        lines.append("No circuit carries faithfulness measurements in its manifest.")
    return lines


# --- Markdown and HTML ----------------------------------------------------------------------------------
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


def _tables(data: _Data) -> dict[str, list[tuple[str | None, pl.DataFrame]]]:
    labels = data.labels
    overlap = data.overlap.select(
        pl.col("circuit_a").replace_strict(labels, default=pl.col("circuit_a")).alias("circuit a"),
        pl.col("circuit_b").replace_strict(labels, default=pl.col("circuit_b")).alias("circuit b"),
        "jaccard", pl.col("weighted_overlap").alias("weighted overlap"),
    ).sort("jaccard", descending=True, nulls_last=True) if data.overlap.height else data.overlap
    shared = data.shared
    if shared.height:
        shared = shared.with_columns(pl.Series("site", [_site_name(s, l) for s, l in zip(shared["site"], shared["layer"])]))
        keep = ["feature", "site", "count", "tasks"] + [c for c in shared.columns if c in labels.values()]
        if len(data.ids) > MAX_MATRIX_CIRCUITS:
            keep.append("effects")
        shared = shared.select(keep)
    top = [(labels[c], data.top[c].select(
        "node_id", "feature", "effect",
        pl.col("feature").replace_strict(data.shared_counts, default=None, return_dtype=pl.Int64).alias("in circuits"),
    )) for c in data.ids] if len(data.ids) > 1 else [(labels[c], data.top[c].select("node_id", "feature", "effect"))
                                                      for c in data.ids]
    errors = pl.DataFrame({
        "circuit": [labels[c] for c in data.ids],
        "error share": [data.overall_error_share(c) for c in data.ids],
        "highest site": [_highest_error_site(data.error_share[c]) for c in data.ids],
    })
    evaluation = pl.DataFrame(
        [{"circuit": labels[c], "node threshold": p.get("node_threshold"), "nodes": p.get("n_nodes"),
          "faithfulness": p.get("faithfulness"), "completeness": p.get("completeness")}
         for c in data.ids for p in data.evaluation[c]],
        schema={"circuit": pl.String, "node threshold": pl.Float64, "nodes": pl.Int64, "faithfulness": pl.Float64,
                "completeness": pl.Float64},
    )
    return {"overlap": [(None, overlap)], "shared": [(None, shared)], "layers": [], "top": top,
            "errors": [(None, errors)], "faithfulness": [(None, evaluation)]}


def _highest_error_site(frame: pl.DataFrame) -> str:
    sites = frame.filter((pl.col("site") != "all") & pl.col("error_share").is_not_null())
    if sites.height == 0:
        return ""
    row = sites.sort("error_share", descending=True).row(0, named=True)
    return f"{row['site_name']} ({row['error_share']:.0%})"


def _circuit_table(data: _Data) -> pl.DataFrame:
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


def _markdown(data: _Data, summary: list[str], images: dict[str, Path | None]) -> str:
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


def _html(data: _Data, summary: list[str], images: dict[str, Path | None]) -> str:
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
