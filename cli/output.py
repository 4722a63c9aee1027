"""Writing a result table in the format the user chose: ``--format table|json|csv|parquet [--out FILE]``.

One helper for every command that prints rows (queries, store listings, reports):

- ``table``: a rich table on stdout (plain text in ``--out``); lists print as ``[a, b]``.
- ``json``: a JSON array of row objects and nothing else; non-finite floats become ``null``.
- ``csv``: a header and one line per row; list cells are written as JSON arrays.
- ``parquet``: binary, so it needs ``--out``, or a stdout that is not a terminal (a pipe or a redirect).
"""

from __future__ import annotations

import io
import json
import math
import os
import sys
from pathlib import Path
from typing import Any, BinaryIO

import click
import polars as pl

FORMATS = ("table", "json", "csv", "parquet")


def emit(frame: pl.DataFrame, fmt: str = "table", out: str | os.PathLike[str] | None = None, *,
         title: str | None = None) -> None:
    """Write ``frame`` in ``fmt`` to ``out`` (a file path) or to stdout."""
    if fmt not in FORMATS:
        raise click.UsageError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "parquet":
        _emit_parquet(frame, out)
        return
    text = {"table": _table_text, "json": to_json_text, "csv": _csv_text}[fmt](frame, title=title, to_file=out is not None)
    if out is None:
        click.echo(text, nl=not text.endswith("\n"))
    else:
        Path(out).write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")


def to_json_text(frame: pl.DataFrame, **_: Any) -> str:
    return json.dumps([_jsonable(row) for row in frame.iter_rows(named=True)], ensure_ascii=False) + "\n"


def _jsonable(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    return str(value)  # dates, decimals: their text


def _flat(frame: pl.DataFrame) -> pl.DataFrame:
    """Nested cells (lists, structs) as JSON text, for formats without nesting."""
    nested = [name for name, dtype in frame.schema.items() if dtype.is_nested()]
    if not nested:
        return frame
    return frame.with_columns(
        pl.Series(name, [None if v is None else json.dumps(_jsonable(v), ensure_ascii=False)
                         for v in frame[name].to_list()], dtype=pl.String)
        for name in nested
    )


def _csv_text(frame: pl.DataFrame, **_: Any) -> str:
    return _flat(frame).write_csv()


def _table_text(frame: pl.DataFrame, *, title: str | None = None, to_file: bool = False) -> str:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, show_lines=False, header_style="bold")
    for name, dtype in frame.schema.items():
        table.add_column(Text(name), justify="right" if dtype.is_numeric() else "left", overflow="fold")
    for row in frame.iter_rows():
        table.add_row(*(Text(_cell(v)) for v in row))  # Text: no markup in cells
    buffer = io.StringIO()
    width = None if not to_file and sys.stdout.isatty() else 200
    Console(file=buffer, width=width, force_terminal=False, no_color=True, soft_wrap=False).print(table)
    text = buffer.getvalue()
    if frame.height == 0:
        text += "(no rows)\n"
    return text


def _cell(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        return "[" + ", ".join(_cell(v) for v in value) + "]"
    if isinstance(value, dict):
        return json.dumps(_jsonable(value), ensure_ascii=False)
    return str(value)


def _emit_parquet(frame: pl.DataFrame, out: str | os.PathLike[str] | None) -> None:
    if out is not None:
        frame.write_parquet(os.fspath(out))
        return
    stdout: BinaryIO = sys.stdout.buffer  # click.get_binary_stream is deprecated (Click 9 removes it)
    if stdout.isatty():
        raise click.UsageError("parquet is binary: give --out FILE, or redirect stdout to a file or pipe")
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    stdout.write(buffer.getvalue())
    stdout.flush()


def _refuse_unwritable(check_name: str, what: str):
    """A Click callback refusing, before any work is done, an ``--out`` that ``sfc_graph.safe_write.<check_name>``
    finds cannot be written (imported when the option is parsed, not when the CLI starts)."""

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is not None:
            from sfc_graph import safe_write
            from sfc_graph.errors import DestinationError

            try:
                getattr(safe_write, check_name)(value, option="--out")
            except DestinationError as exc:
                raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
        return value

    callback.__doc__ = f"Click callback: {what} that cannot be written is refused before any work is done."
    return callback


check_out_file = _refuse_unwritable("check_file_destination", "an output file")
check_out_dir = _refuse_unwritable("check_output_directory", "an output directory (created if missing)")
check_out_path = _refuse_unwritable("check_writable_path", "an output path (a file, or a directory for some formats)")


out_option = click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False),
    default=None,
    callback=check_out_file,
    help="Write the result to FILE instead of stdout (required for parquet on a terminal).",
)

__all__ = ["emit", "FORMATS", "out_option", "to_json_text", "check_out_file", "check_out_dir", "check_out_path"]
