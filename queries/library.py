"""The query library's loader: every ``queries/NAME.cypher`` file parsed into a :class:`Query`
(the file format is described in :mod:`sfc_graph.queries`)."""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from ..cypher_files import split_header, split_statements
from ..errors import QueryError
from .params import COLUMN_TYPES, PARAM_TYPES

if TYPE_CHECKING:  # pragma: no cover
    from polars._typing import PolarsDataType

_PARAM_LINE = re.compile(
    r"^param\s+(?P<name>\w+)\s*:\s*(?P<type>[\w\[\]]+)(?P<nullable>\s*\|\s*null)?"
    r"(?P<bounds>(?:\s*\((?:>=|<=)\s*-?\d+\))*)"
    r"(?:\s+=\s+(?P<default>.+?))?(?:\s+--\s+(?P<help>.*))?$"
)
_BOUND = re.compile(r"\((>=|<=)\s*(-?\d+)\)")
_COLUMN_LINE = re.compile(r"^column\s+(?P<name>\w+)\s*:\s*(?P<type>[\w\[\]]+)(?:\s+--\s+(?P<help>.*))?$")


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    default: Any = None
    required: bool = True
    nullable: bool = False
    minimum: int | None = None
    maximum: int | None = None
    help: str = ""

    def describe(self) -> str:
        text = f"{self.name}: {self.type}{' | null' if self.nullable else ''}"
        return text if self.required else f"{text} = {json.dumps(self.default)}"


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    help: str = ""

    @property
    def dtype(self) -> PolarsDataType:
        return COLUMN_TYPES[self.type]


@dataclass(frozen=True)
class Query:
    name: str
    description: str
    params: tuple[Param, ...]
    columns: tuple[Column, ...]
    text: str  # the portable statement
    variants: tuple[tuple[str, str], ...] = ()  # (dialect, statement)
    post: str | None = None
    one_of: tuple[str, ...] = ()

    def text_for(self, dialect: str) -> str:
        """The text to send to a backend of ``dialect`` (its variant if there is one)."""
        return dict(self.variants).get(dialect, self.text)

    def statements_for(self, dialect: str) -> tuple[str, ...]:
        """The text for ``dialect`` split into its statements (separated by a line holding only ``;``)."""
        return split_statements(self.text_for(dialect))

    def param(self, name: str) -> Param:
        return {p.name: p for p in self.params}[name]

    @property
    def schema(self) -> dict[str, PolarsDataType]:
        return {c.name: c.dtype for c in self.columns}


# --- reading the library ------------------------------------------------------------------------------

def _folder():
    return resources.files(__package__)


def parse_query(text: str, *, source: str, variants: tuple[tuple[str, str], ...] = ()) -> Query:
    """Parse one ``.cypher`` file (header and statement); a malformed header is a bug in the library."""
    header, body = split_header(text)
    fields: dict[str, str] = {}
    params: list[Param] = []
    columns: list[Column] = []
    for line in header:
        if line.startswith("param "):
            params.append(_parse_param(line, source))
        elif line.startswith("column "):
            match = _COLUMN_LINE.match(line)
            if not match or match["type"] not in COLUMN_TYPES:
                raise ValueError(f"{source}: bad column line {line!r}")
            columns.append(Column(match["name"], match["type"], match["help"] or ""))
        elif ":" in line and line.split(":", 1)[0] in ("name", "description", "post", "one-of"):
            key, value = line.split(":", 1)
            fields[key] = value.strip()
        # any other header line is free commentary
    for key in ("name", "description"):
        if key not in fields:
            raise ValueError(f"{source}: header has no '{key}:' line")
    if not columns:
        raise ValueError(f"{source}: header declares no columns")
    if not body:
        raise ValueError(f"{source}: no statement after the header")
    one_of = tuple(p.strip() for p in fields.get("one-of", "").split(",") if p.strip())
    return Query(
        name=fields["name"], description=fields["description"], params=tuple(params), columns=tuple(columns),
        text=body, variants=variants, post=fields.get("post") or None, one_of=one_of,
    )


def _parse_param(line: str, source: str) -> Param:
    match = _PARAM_LINE.match(line)
    if not match or match["type"] not in PARAM_TYPES:
        raise ValueError(f"{source}: bad param line {line!r}")
    bounds = {op: int(value) for op, value in _BOUND.findall(match["bounds"] or "")}
    required = match["default"] is None
    default = None if required else json.loads(match["default"])
    return Param(
        name=match["name"], type=match["type"], default=default, required=required,
        nullable=bool(match["nullable"]), minimum=bounds.get(">="), maximum=bounds.get("<="),
        help=match["help"] or "",
    )


@lru_cache(maxsize=None)
def _library() -> dict[str, Query]:
    files = {p.name: p for p in _folder().iterdir() if p.name.endswith(".cypher") and not p.name.startswith("_")}
    queries: dict[str, Query] = {}
    for file_name, path in sorted(files.items()):
        stem = file_name[: -len(".cypher")]
        if "." in stem:
            continue  # a dialect variant; read with its query below
        variants = []
        for other_name, other in sorted(files.items()):
            if other_name.startswith(stem + ".") and other_name.count(".") == 2:
                dialect = other_name[len(stem) + 1: -len(".cypher")]
                variants.append((dialect, split_header(other.read_text(encoding="utf-8"))[1]))
        query = parse_query(path.read_text(encoding="utf-8"), source=file_name, variants=tuple(variants))
        if query.name != stem:
            raise ValueError(f"{file_name}: header names the query {query.name!r}; the file name must match")
        queries[query.name] = query
    return queries


@lru_cache(maxsize=None)
def internal_statement(name: str) -> str:
    """An internal statement (``_NAME.cypher``), used to check parameters."""
    return split_header(_folder().joinpath(f"_{name}.cypher").read_text(encoding="utf-8"))[1]


def all_queries() -> list[Query]:
    """Every named query, by name."""
    return list(_library().values())


def get_query(name: str) -> Query:
    library = _library()
    if name not in library:
        close = difflib.get_close_matches(name, library, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; known queries: {', '.join(library)}"
        raise QueryError(f"no query named {name!r}{hint}")
    return library[name]
