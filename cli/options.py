"""Options shared by several commands, as decorators (one definition, one help text)."""

from __future__ import annotations

import json
from typing import Any

import click

DEFAULT_STORE = "./sfc-store"
STORE_ENVVAR = "SFC_STORE"
DEVICES = ("auto", "cpu", "cuda")

store_option = click.option(
    "--store",
    "store",
    default=DEFAULT_STORE,
    envvar=STORE_ENVVAR,
    show_envvar=True,
    show_default=True,
    metavar="STORE",
    help="Embedded store directory, or a Neo4j URI (bolt://, neo4j://, neo4j+s://).",
)

quiet_option = click.option(
    "-q",
    "--quiet",
    "quiet",
    is_flag=True,
    help="No progress bars or summaries: print only the command's result (paths, ids, one line per item) "
    "and errors.",
)


def device_option(*, default: str | None = "auto", help: str = ""):
    """``--device auto|cpu|cuda`` (auto: cuda when torch sees a GPU, else cpu)."""
    return click.option(
        "--device",
        "device",
        type=click.Choice(DEVICES),
        default=default,
        show_default=default is not None,
        help=help or "Where torch runs: auto (cuda when a GPU is visible, else cpu), cpu or cuda.",
    )


threads_option = click.option(
    "--threads",
    "threads",
    type=click.IntRange(min=1),
    default=None,
    help="CPU threads for torch in this process (default: the free cores this process may use, see "
    "sfc_graph/threads.py).",
)


def format_option(*choices: str, default: str = "table"):
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(choices),
        default=default,
        show_default=True,
        help="Output format; json prints a JSON array of row objects and nothing else.",
    )


def parse_param_value(text: str) -> Any:
    """``-p NAME VALUE``: JSON when VALUE is valid JSON (numbers, lists, quoted strings), else the string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


param_option = click.option(
    "-p",
    "--param",
    "params",
    type=(str, str),
    multiple=True,
    metavar="NAME VALUE",
    help="Query parameter; VALUE is parsed as JSON when it is valid JSON, else taken as a string.",
)
