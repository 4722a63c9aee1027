"""The report's summary: a few sentences that say what the comparison data shows."""

from __future__ import annotations

from collections import Counter

import polars as pl

from .data import ComparisonData, site_label

FAITHFUL_ENOUGH = 0.8  # the summary reports the smallest stored circuit reaching this faithfulness
MAX_LISTED = 12  # tasks named in the first line; more are counted


def summary_lines(data: ComparisonData) -> list[str]:
    labels = data.labels
    lines = []
    tasks = sorted(set(data.circuits["task"].to_list()))
    named_tasks = ", ".join(tasks[:MAX_LISTED]) + (f" and {len(tasks) - MAX_LISTED} more" if len(tasks) > MAX_LISTED else "")
    lines.append(f"{len(data.ids)} circuit(s) over {len(tasks)} task(s): {named_tasks}.")
    ranked = data.overlap.drop_nulls(["jaccard", "weighted_overlap"]).sort("jaccard", descending=True)
    if ranked.height:
        best, worst = ranked.row(0, named=True), ranked.row(-1, named=True)
        lines.append(
            f"Most similar pair: {labels.get(best['circuit_a'])!s} and {labels.get(best['circuit_b'])!s} "
            f"(Jaccard {best['jaccard']:.2f}, weighted overlap {best['weighted_overlap']:.2f})"
            + (f"; least similar: {labels.get(worst['circuit_a'])!s} and {labels.get(worst['circuit_b'])!s} "
               f"(Jaccard {worst['jaccard']:.2f}, weighted {worst['weighted_overlap']:.2f})." if ranked.height > 1 else ".")
        )
        if ranked.height > 1:
            lines.append(f"Mean pairwise Jaccard {_mean(ranked['jaccard']):.2f}, "
                         f"mean weighted overlap {_mean(ranked['weighted_overlap']):.2f}.")
    if len(data.ids) > 1:
        if data.n_shared:
            in_all = data.shared.filter(pl.col("count") >= len(data.ids)).height
            top = data.shared.head(3).iter_rows(named=True)
            named = "; ".join(f"{r['feature']} ({site_label(r['site'], r['layer'])}, in {r['count']} circuits"
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
    if peaks and data.large:  # hundreds of circuits: where the peaks fall, not one clause per circuit
        counts = Counter(p.rsplit(": ", 1)[1].split(" (")[0] for p in peaks).most_common(3)
        lines.append("Sites holding the largest share of a circuit's |effect|, most often: "
                     + "; ".join(f"{site} ({n} circuits)" for site, n in counts) + ".")
    elif peaks:
        lines.append("Largest share of |effect| by site — " + "; ".join(peaks) + ".")
    shares: dict[str, float] = {}
    for cid in data.ids:
        share = data.overall_error_share(cid)
        if share is not None:
            shares[cid] = share
    if shares:
        high = max(shares, key=lambda c: shares[c])
        low = min(shares, key=lambda c: shares[c])
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
    if faithful and data.large:
        reached = sum("reaches" in f for f in faithful)
        lines.append(f"{reached} of {len(faithful)} circuits reach faithfulness {FAITHFUL_ENOUGH} at a stored threshold.")
    elif faithful:
        lines.append("; ".join(faithful) + f" (threshold for 'faithful enough': {FAITHFUL_ENOUGH}).")
    else:
        lines.append("No circuit carries faithfulness measurements in its manifest.")
    return lines


def _mean(values: pl.Series) -> float:
    mean = values.mean()
    return float(mean) if isinstance(mean, (int, float)) else float("nan")
