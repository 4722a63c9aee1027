"""The store's own Cypher statements, read from the ``.cypher`` files beside this module.

A file holds one statement, or several separated by a line holding only ``;`` (run in order, in one
transaction). Parsed by :mod:`sfc_graph.cypher_files`, as the query library is.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

from ..cypher_files import read_statements


@lru_cache(maxsize=None)
def statements(name: str) -> tuple[str, ...]:
    path = resources.files(__package__).joinpath("cypher").joinpath(f"{name}.cypher")
    return read_statements(path.read_text(encoding="utf-8"))


def statement(name: str) -> str:
    (text,) = statements(name)
    return text


def all_statement_names() -> list[str]:
    folder = resources.files(__package__).joinpath("cypher")
    return sorted(p.name[: -len(".cypher")] for p in folder.iterdir() if p.name.endswith(".cypher"))
