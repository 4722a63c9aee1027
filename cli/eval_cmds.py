"""``sfc eval scr`` / ``sfc eval tpp``: dictionary quality scores from targeted concept removal (SAEBench)."""

from __future__ import annotations

import json
from pathlib import Path

import click
from sfc_graph.cli.app import CONTEXT_SETTINGS
from sfc_graph.cli.options import device_option, store_option, threads_option

TOP_N_DEFAULT = "2,5,10,20,50"


@click.group("eval", context_settings=CONTEXT_SETTINGS)
def eval_group() -> None:
    """Score dictionaries: SCR (spurious correlation removal) and TPP (targeted probe perturbation)."""


def _common(command):
    options = [
        click.option("--model", "model_spec", default="toy-zoo", show_default=True, metavar="M",
                     help="toy-zoo, a checkpoint directory, or a transformer_lens model name."),
        click.option("--dict", "dict_specs", multiple=True, default=("toy-zoo",), show_default=True, metavar="SPEC",
                     help="A set of dictionaries: toy-zoo, toy-zoo-transcoders, a directory of per-site "
                          "dictionaries, or SITE=PATH. Repeatable; every dictionary of every set is scored."),
        click.option("--bios", "bios_spec", default="toy-zoo", show_default=True, metavar="DIR",
                     help="toy-zoo, or a directory with ambiguous/balanced/professions.jsonl."),
        store_option,
        click.option("--no-store", is_flag=True, help="Do not record the scores in the store."),
        click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None, metavar="DIR",
                     help="Write scores.json, report.md and a plot over N here."),
        click.option("--top-n", default=TOP_N_DEFAULT, show_default=True, metavar="N1,N2,…",
                     help="How many latents to ablate."),
        device_option(),
        threads_option,
    ]
    for option in reversed(options):
        command = option(command)
    return command


@eval_group.command(context_settings=CONTEXT_SETTINGS)
@_common
def scr(**kwargs) -> None:
    """SCR: ablate a dictionary's top-N gender latents and see how far a gender-biased profession probe
    recovers towards an unbiased one, (A_abl − A_base) / (A_oracle − A_base) (SAEBench's scr_metric).

    \b
    Example:
      sfc eval scr --store st --out reports/scr
    """
    _run("scr", **kwargs)


@eval_group.command(context_settings=CONTEXT_SETTINGS)
@_common
def tpp(**kwargs) -> None:
    """TPP: ablating a profession's top-N latents should hurt its probe and no other,
    mean_i[(A_i − A_i^(i)) − mean_{j≠i}(A_j − A_j^(i))].

    \b
    Example:
      sfc eval tpp --store st --out reports/tpp
    """
    _run("tpp", **kwargs)


def _run(metric, model_spec, dict_specs, bios_spec, store, no_store, out, top_n, device, threads) -> None:
    from sfc_graph.errors import ComputeError
    from sfc_graph.ingest.dictionaries import DictionarySet, load_dictionary_set
    from sfc_graph.ingest.model import load_model
    from sfc_graph.ingest.sae_scores import evaluate_scr, evaluate_tpp
    from sfc_graph.ingest.shift import load_bios
    from sfc_graph.threads import set_threads

    set_threads(threads)
    try:
        ns = tuple(sorted({int(part) for part in top_n.split(",") if part.strip()}))
    except ValueError:
        raise ComputeError(f"--top-n {top_n!r}: give whole numbers separated by commas") from None
    if not ns or min(ns) < 1:
        raise ComputeError("--top-n: give at least one N >= 1")
    if metric == "scr":
        ambiguous, balanced = load_bios(bios_spec, "ambiguous"), load_bios(bios_spec, "balanced")
        dataset = f"bios:{bios_spec}:ambiguous+balanced"
    else:
        professions = load_bios(bios_spec, "professions")
        dataset = f"bios:{bios_spec}:professions"
    handle = load_model(model_spec, device=device)
    results, entries = [], {}
    for spec in dict_specs:
        loaded = load_dictionary_set([spec], n_layers=handle.n_layers, d_model=handle.d_model,
                                     model_id=handle.model_id)
        # a dictionary named by two sets (toy-zoo and toy-zoo-transcoders share the SAEs) is scored once
        dictionaries = DictionarySet(by_site={s: e for s, e in loaded.by_site.items() if e.info.id not in entries})
        if not dictionaries.sites:
            continue
        if metric == "scr":
            results += evaluate_scr(handle, dictionaries, ambiguous, balanced, top_n=ns)
        else:
            results += evaluate_tpp(handle, dictionaries, professions, top_n=ns)
        entries.update(_entries(handle, dictionaries))
    run = None
    if not no_store:
        from sfc_graph.interventions import ScoreRow, write_scores
        from sfc_graph.store import open_store

        rows = [ScoreRow(r.dictionary, metric, n, v, dataset, handle.model_id, _details(r.details, n))
                for r in results for n, v in r.by_n.items()]
        with open_store(store) as circuit_store:
            run = write_scores(circuit_store, [entries[r.dictionary] for r in results], rows)
    text = _report(metric, results, ns, dataset, run)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "scores.json").write_text(json.dumps(
            [{"dictionary": r.dictionary, "site": r.site, "metric": r.metric, "by_n": r.by_n, "details": r.details}
             for r in results], indent=2, default=float) + "\n", encoding="utf-8")
        _plot(metric, results, ns, out / f"{metric}.png")
        (out / "report.md").write_text(text + f"\n![{metric} over N]({metric}.png)\n", encoding="utf-8")
    click.echo(text)


def _entries(handle, dictionaries):
    from sfc_graph.interventions import DictionaryEntry

    out = {}
    for site in dictionaries.sites:
        info = dictionaries.infos()[site.name]
        out[info.id] = DictionaryEntry(info.id, info.kind, info.d_dict, site.kind, site.layer, info.sha256,
                                       handle.model_id)
    return out


def _details(details: dict, n: int) -> dict:
    """What the score at N came from (the accuracies; the latent lists stay in scores.json)."""
    row = details.get("by_n", {}).get(n, {})
    keep = {k: v for k, v in details.items() if k != "by_n"}
    if "dir1" in row:
        keep["by_n"] = {d: {k: v for k, v in row[d].items() if k != "latents"} for d in ("dir1", "dir2")}
    else:
        keep["by_n"] = row
    return keep


def _report(metric, results, ns, dataset, run) -> str:
    title = {"scr": "SCR (spurious correlation removal)", "tpp": "TPP (targeted probe perturbation)"}[metric]
    lines = [f"# {title}", "", f"data: {dataset}" + (f"; stored as run {run}" if run else ""), "",
             "| dictionary | " + " | ".join(f"N={n}" for n in ns) + " |",
             "|---|" + "---:|" * len(ns)]
    for r in results:
        lines.append(f"| {r.dictionary} | " + " | ".join(f"{r.by_n[n]:.3f}" for n in ns) + " |")
    return "\n".join(lines) + "\n"


def _plot(metric, results, ns, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in results:
        ax.plot(ns, [r.by_n[n] for n in ns], marker="o", label=r.site if r.site else r.dictionary)
    ax.set_xscale("log")
    ax.set_xticks(ns)
    ax.set_xticklabels([str(n) for n in ns])
    ax.set_xlabel("N latents ablated")
    ax.set_ylabel(metric.upper())
    ax.axhline(0, color="grey", linewidth=0.5)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
