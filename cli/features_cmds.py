"""``sfc features build|show`` (feature dashboards) and ``sfc label`` (feature labels)."""

from __future__ import annotations

import json
import time

import click

from sfc_graph.cli.app import CONTEXT_SETTINGS
from sfc_graph.cli.options import device_option, quiet_option, store_option, threads_option


@click.group(context_settings=CONTEXT_SETTINGS)
def features() -> None:
    """Feature dashboards: top activating contexts, density and logit lens, stored with the store."""


@features.command(context_settings=CONTEXT_SETTINGS)
@click.option("--model", "model_spec", default="toy-zoo", show_default=True,
              help="toy-zoo, a checkpoint directory, or a transformer_lens model name.")
@click.option("--dict", "dict_specs", multiple=True, default=("toy-zoo",), show_default=True,
              help="Dictionaries: toy-zoo, toy-zoo-transcoders, a directory of per-site dictionaries, or SITE=PATH "
                   "(repeatable).")
@click.option("--corpus", default="zoo", show_default=True, metavar="FILE|zoo",
              help="zoo (the zoo's text stream, or its task sentences), a .txt file (one document per line) or a "
                   ".jsonl file ({\"text\": ...} or {\"tokens\": [...], \"labels\": [...]} per line).")
@click.option("--k", "top_k", type=click.IntRange(1, 100), default=12, show_default=True,
              help="Top activating contexts kept per latent.")
@click.option("--max-docs", type=click.IntRange(min=1), default=None, help="Use only the first N documents.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--relabel", is_flag=True, help="Replace hand-set and imported labels by drafted ones too.")
@device_option()
@threads_option
@quiet_option
@store_option
def build(model_spec: str, dict_specs: tuple[str, ...], corpus: str, top_k: int, max_docs: int | None,
          batch_size: int, relabel: bool, device: str, threads: int, quiet: bool, store: str) -> None:
    """Compute a dashboard for every latent of the dictionaries and store it with the store.

    Latents get a drafted label (marked auto) from their dominant token pattern; labels set by hand
    (sfc label) or imported from Neuronpedia are kept.

    \b
    Examples:
      sfc features build --model toy-zoo --dict toy-zoo --corpus zoo
      sfc features build --model gpt2 --dict resid_6=path/to/sae --corpus texts.txt --k 20 --device cuda
    """
    from sfc_graph.cli.progress import progress_for
    from sfc_graph.features import write_dashboards
    from sfc_graph.ingest.dashboards import DashboardSettings, iter_dashboards, load_corpus
    from sfc_graph.ingest.dictionaries import load_dictionary_set
    from sfc_graph.ingest.model import load_model
    from sfc_graph.store import open_store

    from sfc_graph.threads import set_threads

    set_threads(threads)  # the free cores this process may use when not given (sfc_graph.threads)
    started = time.perf_counter()
    with open_store(store) as opened:  # fail on a bad store before the model is loaded
        handle = load_model(model_spec, device=device)
        dictionaries = load_dictionary_set(list(dict_specs), n_layers=handle.n_layers, d_model=handle.d_model,
                                           model_id=handle.model_id).to(handle.device)
        documents = load_corpus(corpus, handle, max_docs=max_docs)
        settings = DashboardSettings(k=top_k, batch_size=batch_size)
        written = dead = 0
        # one dictionary's rows at a time: stored before the next dictionary's exist
        for rows in iter_dashboards(handle, dictionaries, documents, settings=settings, progress=progress_for(quiet)):
            written += write_dashboards(opened, rows, relabel=relabel)
            dead += int((rows["density"] == 0).sum())
    elapsed = time.perf_counter() - started
    click.echo(f"stored {written:,} feature dashboards ({len(dictionaries.sites)} dictionaries, {dead:,} never active) "
               f"from {len(documents.ids):,} documents / {documents.n_tokens - len(documents.ids):,} tokens of {documents.name} "
               f"in {elapsed:.1f} s")


@features.command(context_settings=CONTEXT_SETTINGS)
@click.argument("feature")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--examples", "n_examples", type=click.IntRange(min=0), default=8, show_default=True,
              help="Contexts to print.")
@store_option
def show(feature: str, fmt: str, n_examples: int, store: str) -> None:
    """Print the dashboard of FEATURE (<dictionary id>/<latent>).

    \b
    Example:
      sfc features show toy-zoo-v1/resid_1/sae-256/17
    """
    from sfc_graph.errors import FeatureError
    from sfc_graph.features import get_info, split_feature_id
    from sfc_graph.store import open_store

    split_feature_id(feature)
    with open_store(store, read_only=True, create=False) as opened:
        info = get_info(opened, feature)
    if info is None:
        raise FeatureError(f"no dashboard or label for {feature!r} in the store; build dashboards with "
                           "`sfc features build --model ... --dict ...`")
    if fmt == "json":
        click.echo(json.dumps(info, ensure_ascii=False, default=str))
        return
    _print_dashboard(info, n_examples)


def _print_dashboard(info: dict, n_examples: int) -> None:
    from rich.console import Console
    from rich.text import Text

    console = Console(highlight=False)
    dash = info.get("dashboard") or {}
    console.print(Text(info["id"], style="bold"))
    label = info.get("label")
    console.print(f"label: {label!r} ({info.get('label_source')})" if label else "label: (none)")
    if not dash:
        console.print("no dashboard built for this feature yet")
        return
    console.print(f"site {info.get('site')} layer {info.get('layer')} · density {info['density']:.3%} · "
                  f"max {info['max_activation']:.3g} · mean when active {info['mean_activation']:.3g}")
    console.print(f"corpus: {info.get('corpus')} · built {info.get('built_at')}")
    console.print("top activating tokens: " + ", ".join(info.get("top_tokens") or []))
    console.print("logit lens, promotes:   " + "  ".join(f"{t} {v:+.2f}" for t, v in dash.get("top_logits", [])))
    console.print("logit lens, suppresses: " + "  ".join(f"{t} {v:+.2f}" for t, v in dash.get("bottom_logits", [])))
    examples = dash.get("examples", [])
    console.print(Text(f"top contexts ({min(n_examples, len(examples))} of {len(examples)}; the peak token in [brackets]):"))
    peak = max((ex["activation"] for ex in examples), default=1.0) or 1.0
    for ex in examples[:n_examples]:
        line = Text(f"  {ex['activation']:7.3f}  ")
        for i, (token, act) in enumerate(zip(ex["tokens"], ex["acts"])):
            strength = max(0.0, min(1.0, act / peak))
            style = f"on rgb({255 - int(120 * strength)},{255 - int(60 * strength)},255)" if act > 0 else ""
            text = f"[{token}]" if i == ex["at"] else token
            line.append(text, style=style + (" bold" if i == ex["at"] else ""))
            line.append(" ")
        if ex.get("behaviour"):
            line.append(f"  ({ex['behaviour']})", style="dim")
        console.print(line)


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("feature", required=False)
@click.argument("text", required=False)
@click.option("--import", "import_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="Import labels from a Neuronpedia explanations export (JSON array or JSON lines, .gz ok).")
@click.option("--dictionary", "dictionary", metavar="DICT_ID",
              help="With --import: the dictionary id every explanation in FILE is about.")
@click.option("--map", "maps", multiple=True, metavar="NP_SOURCE=DICT_ID",
              help="With --import: map a Neuronpedia modelId/layer (or layer) to one of our dictionary ids (repeatable).")
@store_option
def label(feature: str | None, text: str | None, import_path: str | None, dictionary: str | None,
          maps: tuple[str, ...], store: str) -> None:
    """Label FEATURE with TEXT by hand, or import labels from a Neuronpedia export with --import.

    Hand-set and imported labels are kept when dashboards are rebuilt; drafted ones (auto) are redrafted.
    Labels show in `sfc viz`, in reports, in `sfc serve`, and in the label columns of the queries
    (`sfc query feature-search -p text agreement`).

    \b
    Examples:
      sfc label toy-zoo-v1/resid_1/sae-256/17 "plural subject, before the verb"
      sfc label --import gpt2-small-6-res-jb-explanations.json
      sfc label --import explanations.jsonl --dictionary gpt2/resid_6/my-sae
    """
    from sfc_graph.features import read_neuronpedia_explanations, set_label, set_labels
    from sfc_graph.store import open_store

    if import_path:
        if feature or text:
            raise click.UsageError("give either FEATURE TEXT or --import FILE, not both")
        mapping = {}
        for item in maps:
            source, sep, target = item.partition("=")
            if not sep or not source or not target:
                raise click.UsageError(f"--map {item}: expected NP_SOURCE=DICT_ID")
            mapping[source] = target
        labels = read_neuronpedia_explanations(import_path, mapping=mapping, dictionary=dictionary)
        with open_store(store, create=False) as opened:
            n = set_labels(opened, labels, source="neuronpedia")
        click.echo(f"imported {n:,} labels from {import_path}")
        return
    if not feature or text is None:
        raise click.UsageError('give FEATURE and TEXT (sfc label FEATURE "text"), or --import FILE')
    with open_store(store, create=False) as opened:
        set_label(opened, feature, text)
    click.echo(f"labelled {feature}: {' '.join(text.split())!r}")
