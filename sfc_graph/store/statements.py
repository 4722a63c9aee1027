"""The store's own Cypher statements, read from the ``.cypher`` files beside this module.

A file holds one statement, or several separated by a line holding only ``;`` (run in order, in one
transaction). ``//`` comment lines are kept out of the text sent to the database.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources


@lru_cache(maxsize=None)
def statements(name: str) -> tuple[str, ...]:
    text = resources.files(__package__).joinpath("cypher", f"{name}.cypher").read_text(encoding="utf-8")
    parts, current = [], []
    for line in text.splitlines():
        if line.strip() == ";":
            parts.append(current)
            current = []
        elif not line.lstrip().startswith("//"):
            current.append(line)
    parts.append(current)
    return tuple("\n".join(p).strip() for p in parts if "\n".join(p).strip())


def statement(name: str) -> str:
    (text,) = statements(name)
    return text


def all_statement_names() -> list[str]:
    folder = resources.files(__package__).joinpath("cypher")
    return sorted(p.name[: -len(".cypher")] for p in folder.iterdir() if p.name.endswith(".cypher"))
