"""Options shared by several commands, as decorators (one definition, one help text)."""

from __future__ import annotations

import json
import os
from typing import Any

import click

DEFAULT_STORE = "./sfc-store"


def default_store() -> str:
    return os.environ.get("SFC_STORE") or DEFAULT_STORE


store_option = click.option(
    "--store",
    "store",
    default=default_store,
    show_default="$SFC_STORE, else ./sfc-store",
    metavar="STORE",
    help="Embedded store directory, or a Neo4j URI (bolt://, neo4j://, neo4j+s://).",
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
