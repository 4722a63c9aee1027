"""``sfc zoo``: the toy model zoo's card (``info``), its quality check (``verify``) and its rebuild (``build``)."""

from __future__ import annotations

import json
from pathlib import Path

import click
from sfc_graph.cli.app import CONTEXT_SETTINGS

from sfc_graph.errors import ZooError


@click.group(context_settings=CONTEXT_SETTINGS)
def zoo() -> None:
    """The toy model zoo: a small model trained on the paper's tasks, with dictionaries for every site."""


def _zoo_root(path: str | None) -> Path:
    from sfc_graph import zoo as zoo_lib

    return Path(path) if path else zoo_lib.zoo_dir()


dir_option = click.option(
    "--dir",
    "root",
    type=click.Path(file_okay=False, exists=True),
    default=None,
    help="A zoo directory written by `sfc zoo build` (default: the shipped zoo).",
)


def _card_tables(card: dict, console) -> None:
    from rich.table import Table
    from sfc_graph.zoo.card import BARS, LOGIT_DIFF_TASKS, loss_recovered_ok

    arch = card["architecture"]
    console.print(f"[bold]{card['name']}[/bold]: {arch['kind']}; {arch['n_layers']} layers, d_model "
                  f"{arch['d_model']}, {arch['n_heads']} heads, d_mlp {arch['d_mlp']}, vocabulary "
                  f"{arch['d_vocab']}, {arch['n_params']:,} parameters")
    training = card.get("training", {}).get("model")
    if training:
        extra = ""
        if "noise" in training:
            extra = f"; corpus noise {training['noise']}, weight decay {training['weight_decay']}, lr {training['lr']}"
        console.print(f"trained {training['steps']} steps × {training['batch_size']} documents "
                      f"({training['sentences_seen']:,} documents), final loss {training['final_loss']:.3f}{extra}")
    build = card.get("build")
    if build:
        console.print(f"built in {build['wall_seconds'] / 60:.1f} min ({build['model_seconds'] / 60:.1f} min the model) "
                      f"on {build['threads']} torch thread(s), torch {build['torch']}, seed {build['seed']}")
    low, high = BARS.get("logit_diff_min"), BARS.get("logit_diff_max")
    ranged = set(LOGIT_DIFF_TASKS) if low is not None else set()
    title = f"tasks (held-out test pairs; bars: accuracy ≥ {BARS['task_accuracy']}"
    title += f", mean logit diff in [{low}, {high}] on agreement and ioi)" if ranged else ")"
    tasks = Table(title=title)
    tasks.add_column("task", no_wrap=True)
    for col in ("pairs", "accuracy", "mean logit diff"):
        tasks.add_column(col, justify="right")
    for t in card["tasks"]:
        ok = t["accuracy"] >= BARS["task_accuracy"]
        diff_ok = t["task"] not in ranged or low <= t["mean_logit_diff"] <= high
        tasks.add_row(t["task"], str(t["n_pairs"]), _mark(f"{t['accuracy']:.3f}", ok),
                      _mark(f"{t['mean_logit_diff']:.2f}", diff_ok))
    console.print(tasks)
    dicts = Table(title=(f"dictionaries (held-out text; bars: FVE ≥ {BARS['fve']}, L0 in [{BARS['l0_min']:g}, "
                         f"{BARS['l0_max']:g}], dead ≤ {BARS['dead_fraction']}, loss recovered ≥ "
                         f"{BARS['loss_recovered']}, or a splice cost ≤ {BARS.get('max_splice_cost')} nats where "
                         f"ablation costs < {BARS.get('loss_recovered_min_ablation_cost')})"))
    dicts.add_column("dictionary", no_wrap=True)
    for col in ("kind", "d_sae", "FVE", "L0", "dead", "loss recovered"):
        dicts.add_column(col, justify="left" if col == "kind" else "right")
    for name, d in card["dictionaries"].items():
        dicts.add_row(
            name, d["kind"], str(d["d_sae"]),
            _mark(f"{d['fve']:.3f}", d["fve"] >= BARS["fve"]),
            _mark(f"{d['l0']:.1f}", BARS["l0_min"] <= d["l0"] <= BARS["l0_max"]),
            _mark(f"{d['dead_fraction']:.3f}", d["dead_fraction"] <= BARS["dead_fraction"]),
            _mark(f"{d['loss_recovered']:.3f}", loss_recovered_ok(d)),
        )
    console.print(dicts)


def _mark(text: str, ok: bool) -> str:
    return text if ok else f"[bold red]{text}[/bold red]"


@zoo.command(context_settings=CONTEXT_SETTINGS)
@dir_option
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="json prints the card as JSON and nothing else.")
def info(root: str | None, fmt: str) -> None:
    """Print the zoo card: architecture, training, per-task and per-dictionary figures."""
    from rich.console import Console

    from sfc_graph import zoo as zoo_lib

    card = zoo_lib.load_card(_zoo_root(root))
    if fmt == "json":
        click.echo(json.dumps(card, indent=2))
        return
    _card_tables(card, Console())


@zoo.command(context_settings=CONTEXT_SETTINGS)
@dir_option
@click.option("--sample", type=int, default=None, metavar="N",
              help="Check only the first N test pairs of each task (default: all).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="json prints the recomputed card as JSON.")
def verify(root: str | None, sample: int | None, fmt: str) -> None:
    """Recompute the card on the zoo's weights and fail if any figure falls below its bar."""
    from rich.console import Console
    from sfc_graph.zoo.build import compute_card
    from sfc_graph.zoo.card import failures

    from sfc_graph import zoo as zoo_lib

    path = _zoo_root(root)
    console = Console(stderr=fmt == "json")
    with console.status("recomputing the card on held-out data"):
        model = zoo_lib.load_model(root=path)
        card = compute_card(path, model, zoo_lib.load_card(path), task_limit=sample)
    if fmt == "json":
        click.echo(json.dumps(card, indent=2))
    else:
        _card_tables(card, console)
    bad = failures(card)
    if bad:
        for line in bad:
            console.print(f"[bold red]FAIL[/bold red] {line}")
        raise ZooError(f"the zoo at {path} fails {len(bad)} quality bar(s): {'; '.join(bad)}")
    console.print("[bold green]all figures meet their bars[/bold green]")


@zoo.command(context_settings=CONTEXT_SETTINGS)
@click.option("--out", "out", type=click.Path(file_okay=False), required=True,
              help="Directory to write the zoo into (created; must be empty unless --overwrite).")
@click.option("--seed", type=int, default=0, show_default=True, help="Build seed; same seed ⇒ same weights.")
@click.option("--quick", is_flag=True, help="Tiny sizes (seconds, for smoke tests); the bars will not hold.")
@click.option("--model-steps", type=int, default=None, help="Model training steps (default 1200; quick 60).")
@click.option("--dict-steps", type=int, default=None, help="Training steps per dictionary.")
@click.option("--d-sae", type=int, default=None, help="Latents per dictionary (default 256).")
@click.option("--overwrite", is_flag=True, help="Replace the artefacts in a non-empty --out.")
@click.option("--threads", type=int, default=2, show_default=True,
              help="torch CPU threads; the weights can differ in the last bits across thread counts.")
@click.option("--check/--no-check", default=True, show_default=True,
              help="Exit non-zero if the new card misses a bar (off with --quick).")
def build(out: str, seed: int, quick: bool, model_steps: int | None, dict_steps: int | None,
          d_sae: int | None, overwrite: bool, threads: int, check: bool) -> None:
    """Rebuild the zoo from scratch: tokenizer, tasks, model, dictionaries, card (deterministic per seed)."""
    from dataclasses import replace

    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskID,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from sfc_graph.zoo.build import BuildConfig
    from sfc_graph.zoo.build import build as build_zoo
    from sfc_graph.zoo.card import failures

    config = BuildConfig.quick(seed) if quick else BuildConfig(seed=seed)
    config = replace(config, threads=threads)
    if model_steps is not None:
        config = replace(config, model=replace(config.model, steps=model_steps))
    if dict_steps is not None or d_sae is not None:
        config = replace(config, dictionary=replace(
            config.dictionary,
            steps=dict_steps if dict_steps is not None else config.dictionary.steps,
            d_sae=d_sae if d_sae is not None else config.dictionary.d_sae))
    console = Console(stderr=True)
    labels = {"model": "training the model", "activations": "caching activations",
              "dictionaries": "training dictionaries", "card": "computing the card"}
    with Progress(TextColumn("{task.description:<24}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=console) as bars:
        ids: dict[str, TaskID] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in ids:
                ids[stage] = bars.add_task(labels.get(stage, stage), total=total)
            bars.update(ids[stage], completed=done, total=total)

        card = build_zoo(Path(out), config, progress=progress, overwrite=overwrite)
    _card_tables(card, console)
    console.print(f"built in {card['build']['wall_seconds']:.0f} s into {out}")
    bad = failures(card)
    if bad and check and not quick:
        raise ZooError(f"the new zoo fails {len(bad)} quality bar(s): {'; '.join(bad)}")
