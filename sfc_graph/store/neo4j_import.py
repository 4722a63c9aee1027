"""Files for ``neo4j-admin database import full``: the fastest first load of many circuits into Neo4j.

The offline importer writes a new database from CSV files far faster than any transaction can, but only
into an empty (or replaced) database with the server stopped. :func:`write_import_files` turns bundles into
exactly the graph :func:`sfc_graph.graph.circuit_rows` describes — the same labels, keys, properties and
relationships the Neo4j backend writes — so that a store imported this way is an ordinary store afterwards
(``sfc load`` adds to it, ``sfc delete`` removes from it; opening it creates the constraints and indexes).

Layout of the output directory::

    nodes/<Label>.header.csv                 id:ID(<Label>),…,:LABEL
    nodes/<Label>.<part>.csv                 data, no header
    relationships/<TYPE>.<From>.<To>.header.csv   :START_ID(<From>),:END_ID(<To>),…,:TYPE
    relationships/<TYPE>.<From>.<To>.<part>.csv
    schema.cypher                            the constraints and indexes (cypher-shell -f schema.cypher)
    import.sh                                runs neo4j-admin with all of the above

Shared nodes (models, dictionaries, features, error nodes, outputs, tasks) are deduplicated across the
bundles and written once (part ``shared``); each circuit's own nodes and relationships are written per
bundle (part ``c0001``, ``c0002``, …) as the bundles are read, so memory holds one bundle at a time plus
the shared nodes. A circuit id given twice is imported once.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import polars as pl

from ..bundle import read_bundle
from ..errors import StoreError
from ..graph import INT64, DOUBLE, LABELS, NODE_LABELS, REL_TYPES, circuit_rows, shared_rel_owner
from .neo4j import SCHEMA_STATEMENTS

log = logging.getLogger(__name__)

_CSV_TYPE = {INT64: ":long", DOUBLE: ":double"}  # strings are the importer's default type
SHARED_PART = "shared"


@dataclass(frozen=True)
class ImportFiles:
    """What :func:`write_import_files` wrote."""

    out: Path
    circuits: list[str]
    skipped: list[str]  # circuit ids given more than once (imported once)
    node_counts: dict[str, int]
    relationship_counts: dict[str, int]
    arguments: list[str] = field(default_factory=list)  # neo4j-admin arguments, paths relative to ``out``

    def command(self, *, database: str = "neo4j", base: str | os.PathLike[str] | None = None) -> str:
        """The ``neo4j-admin`` command line, with the files under ``base`` (default: where they were written)."""
        root = Path(base) if base is not None else self.out.resolve()
        args = [arg.replace("{DIR}", str(root)) for arg in self.arguments]
        return shlex.join(["neo4j-admin", "database", "import", "full", *args, database])


def node_header(label_name: str) -> list[str]:
    label = LABELS[label_name]
    header = []
    for name, kind in label.properties:
        if name == label.key:
            header.append(f"{name}:ID({label.name})")
        else:
            header.append(name + _CSV_TYPE.get(kind, ""))
    return header + [":LABEL"]


def relationship_header(rel_name: str, src: str, dst: str) -> list[str]:
    rel = next(r for r in REL_TYPES if r.name == rel_name)
    props = [name + _CSV_TYPE.get(kind, "") for name, kind in rel.properties]
    return [f":START_ID({src})", f":END_ID({dst})", *props, ":TYPE"]


def write_import_files(
    bundles: Iterable[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    on_bundle: Callable[[str, bool], None] | None = None,
) -> ImportFiles:
    """Write ``neo4j-admin database import full`` files for ``bundles`` into the new directory ``out``.

    Every bundle is validated as it is read (a bad one raises :class:`~sfc_graph.errors.BundleError`).
    ``on_bundle(circuit_id, written)`` is called after each bundle (``written`` False for a repeated id).
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise StoreError(f"{out} exists and is not an empty directory; choose a new --out for the import files")
    # Written aside and renamed at the end, so that a bad bundle half-way leaves no half-written --out.
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    work.chmod(0o755)  # mkdtemp makes it private; neo4j-admin may run as another user (the container's neo4j)
    try:
        result = _write(bundles, work, on_bundle)
        os.replace(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    log.info("wrote neo4j-admin import files for %d circuits to %s", len(result.circuits), out)
    return ImportFiles(out, result.circuits, result.skipped, result.node_counts, result.relationship_counts,
                       result.arguments)


def _write(bundles: Iterable[str | os.PathLike[str]], out: Path,
           on_bundle: Callable[[str, bool], None] | None) -> ImportFiles:
    (out / "nodes").mkdir()
    (out / "relationships").mkdir()

    shared_nodes: dict[str, list[pl.DataFrame]] = {label.name: [] for label in NODE_LABELS if label.shared}
    shared_rels: dict[tuple[str, str, str], list[pl.DataFrame]] = {}
    parts: dict[str, list[str]] = {}  # file stem -> data parts written
    node_counts = {label.name: 0 for label in NODE_LABELS}
    rel_counts = {rel.name: 0 for rel in REL_TYPES}
    circuits: list[str] = []
    skipped: list[str] = []

    for path in bundles:
        bundle = read_bundle(path)
        if bundle.circuit_id in circuits:
            skipped.append(bundle.circuit_id)
            if on_bundle:
                on_bundle(bundle.circuit_id, False)
            continue
        circuits.append(bundle.circuit_id)
        part = f"c{len(circuits):04d}"
        rows = circuit_rows(bundle)
        for label in NODE_LABELS:
            frame = rows.nodes[label.name]
            if label.shared:
                shared_nodes[label.name].append(frame)
            elif frame.height:
                _write_part(out / "nodes", label.name, part, _node_data(label.name, frame), parts)
                node_counts[label.name] += frame.height
        for key, frame in rows.rels.items():
            if shared_rel_owner(key) is not None:
                shared_rels.setdefault(key, []).append(frame)
            elif frame.height:
                stem = ".".join(key)
                _write_part(out / "relationships", stem, part, _rel_data(key, frame), parts)
                rel_counts[key[0]] += frame.height
        if on_bundle:
            on_bundle(bundle.circuit_id, True)

    for label in NODE_LABELS:
        if not label.shared or not shared_nodes[label.name]:
            continue
        frame = pl.concat(shared_nodes[label.name], how="vertical_relaxed").unique(
            label.key, keep="first", maintain_order=True
        )
        if frame.height:
            _write_part(out / "nodes", label.name, SHARED_PART, _node_data(label.name, frame), parts)
            node_counts[label.name] += frame.height
    for key, frames in shared_rels.items():
        frame = pl.concat(frames, how="vertical_relaxed").unique(["from", "to"], keep="first", maintain_order=True)
        if frame.height:
            _write_part(out / "relationships", ".".join(key), SHARED_PART, _rel_data(key, frame), parts)
            rel_counts[key[0]] += frame.height

    arguments = ["--id-type=string", "--multiline-fields=true"]
    for label in NODE_LABELS:
        if label.name in parts:
            header = out / "nodes" / f"{label.name}.header.csv"
            header.write_text(",".join(node_header(label.name)) + "\n", encoding="utf-8")
            arguments.append("--nodes=" + _file_list("nodes", label.name, parts[label.name]))
    for rel in REL_TYPES:
        for src, dst in rel.endpoints:
            stem = f"{rel.name}.{src}.{dst}"
            if stem in parts:
                header = out / "relationships" / f"{stem}.header.csv"
                header.write_text(",".join(relationship_header(rel.name, src, dst)) + "\n", encoding="utf-8")
                arguments.append("--relationships=" + _file_list("relationships", stem, parts[stem]))

    result = ImportFiles(out, circuits, skipped, node_counts, rel_counts, arguments)
    (out / "schema.cypher").write_text(";\n".join(SCHEMA_STATEMENTS.values()) + ";\n", encoding="utf-8")
    script = out / "import.sh"
    script.write_text(_import_script(result), encoding="utf-8")
    script.chmod(0o755)
    return result


def _node_data(label_name: str, frame: pl.DataFrame) -> pl.DataFrame:
    return frame.select(LABELS[label_name].columns).with_columns(pl.lit(label_name).alias(":LABEL"))


def _rel_data(key: tuple[str, str, str], frame: pl.DataFrame) -> pl.DataFrame:
    rel = next(r for r in REL_TYPES if r.name == key[0])
    return frame.select(["from", "to", *rel.columns]).with_columns(pl.lit(key[0]).alias(":TYPE"))


def _write_part(folder: Path, stem: str, part: str, frame: pl.DataFrame, parts: dict[str, list[str]]) -> None:
    # No header (it has its own file); nulls as empty fields, which the importer leaves unset; empty strings
    # quoted (""), which it keeps as empty strings.
    frame.write_csv(folder / f"{stem}.{part}.csv", include_header=False)
    parts.setdefault(stem, []).append(part)


def _file_list(folder: str, stem: str, stem_parts: list[str]) -> str:
    files = [f"{{DIR}}/{folder}/{stem}.header.csv"] + [f"{{DIR}}/{folder}/{stem}.{p}.csv" for p in stem_parts]
    return ",".join(files)


def _import_script(result: ImportFiles) -> str:
    args = " \\\n  ".join(_quoted_with_here(a) if "{DIR}" in a else shlex.quote(a) for a in result.arguments)
    return f"""#!/bin/sh
# Import {len(result.circuits)} circuit(s) into a NEW Neo4j database with neo4j-admin (Neo4j 5).
# Run it where neo4j-admin and these files are (e.g. inside the container, see docker/README.md), with the
# database stopped. Usage: ./import.sh [DATABASE] [more neo4j-admin options, e.g. --overwrite-destination=true]
# Afterwards start Neo4j; the first `sfc` command on the store (or `cypher-shell -f schema.cypher`) creates
# the constraints and indexes.
set -eu
HERE="$(cd "$(dirname "$0")" && pwd)"
DATABASE="${{1:-neo4j}}"
if [ "$#" -gt 0 ]; then shift; fi
exec "${{NEO4J_ADMIN:-neo4j-admin}}" database import full \\
  {args} \\
  "$@" "$DATABASE"
"""


def _quoted_with_here(arg: str) -> str:
    # The file paths are relative to the script's folder; the folder name may hold spaces.
    head, _, rest = arg.partition("=")
    pieces = rest.split(",")
    quoted = ",".join('"$HERE"' + shlex.quote(p.replace("{DIR}", "", 1)) for p in pieces)
    return f"{head}={quoted}"
