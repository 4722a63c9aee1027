"""Reading ``.cypher`` files: the one parser for the query library (``queries/``) and the store's own
statements (``sfc_graph/store/cypher/``).

A file opens with a header of ``//`` comment lines (the query library puts its ``name:``/``param``/
``column`` declarations there), then holds one statement, or several separated by a line holding only
``;``. Comment lines never reach the database.

>>> text = "// name: demo\\n// column n: int\\nMATCH (n) RETURN n\\n// why\\n;\\nRETURN 1 AS one\\n"
>>> split_header(text)
(['name: demo', 'column n: int'], 'MATCH (n) RETURN n\\n;\\nRETURN 1 AS one')
>>> read_statements(text)
('MATCH (n) RETURN n', 'RETURN 1 AS one')
"""

from __future__ import annotations


def split_header(text: str) -> tuple[list[str], str]:
    """The header's lines (``//`` removed, blank ones dropped) and the body without its comment lines."""
    header: list[str] = []
    body: list[str] = []
    in_header = True
    for line in text.splitlines():
        stripped = line.strip()
        if in_header and (stripped.startswith("//") or not stripped):
            if stripped:
                header.append(stripped[2:].strip())
            continue
        in_header = False
        if not stripped.startswith("//"):
            body.append(line.rstrip())
    return header, "\n".join(body).strip()


def split_statements(body: str) -> tuple[str, ...]:
    """A body split into its statements at lines holding only ``;`` (empty statements dropped)."""
    parts: list[str] = []
    current: list[str] = []
    for line in body.splitlines():
        if line.strip() == ";":
            parts.append("\n".join(current).strip())
            current = []
        else:
            current.append(line)
    parts.append("\n".join(current).strip())
    return tuple(p for p in parts if p)


def read_statements(text: str) -> tuple[str, ...]:
    """The statements of a whole file, comments left out."""
    return split_statements(split_header(text)[1])
