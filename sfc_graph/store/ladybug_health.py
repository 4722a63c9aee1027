"""The embedded store's identity and health, and the engine's errors in words a user acts on.

A store directory holds ``sfc-store.json`` (the marker: which engine, which format) and ``graph.lbdb``
(the LadybugDB database, with its ``.wal`` and ``.shadow`` files while writing). The marker is written
last when a store is created, so a directory with a marker is a store that once held its tables. If its
database later goes missing, empty or loses its tables, the store has lost its data: we refuse it and say
how to rebuild it from bundles (the source of truth, docs/bundle.md). Opening it as usual would let the
engine start an empty database in its place and the next ``sfc load`` would report success over the loss.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from ..errors import StoreDataLost, StoreError
from ..safe_write import strict_loads

DB_FILE = "graph.lbdb"
MARKER_FILE = "sfc-store.json"
# 2: the schema of this release (EDGE without a circuit property, CircuitNode.activation, Head/Token/Behaviour and
# the record labels); a format-1 store cannot be read by it and is rebuilt from its bundles.
STORE_FORMAT = 2
ENGINE = "ladybug"
MARKER = {"format": STORE_FORMAT, "engine": ENGINE, "schema": "sfc-graph/1"}
LOW_SPACE_BYTES = 16 << 20  # an engine I/O failure with less free space than this is a full disk

_LOCK_PID = re.compile(r"Lock is held by PID (\d+)")
_POST_COMMIT = "Transaction committed successfully, but the post-commit checkpoint failed"
_RECOVERY_PENDING = ("read-only mode while checkpoint recovery is pending",
                     "Couldn't replay shadow pages under read-only mode")


def lost_data(path: Path, what: str) -> StoreDataLost:
    return StoreDataLost(
        f"the store at {path} has lost its data: {what}. sfc will not start an empty store in its place. "
        f"Rebuild it from your bundles: move {path} aside, then run `sfc load BUNDLE_DIR... --store {path}`"
    )


def read_marker(path: Path) -> dict[str, Any]:
    """The marker's content, refused unless it is the JSON object of a store format this code reads."""
    marker = path / MARKER_FILE
    try:
        data = strict_loads(marker.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise StoreError(f"{marker} is not a valid store marker ({_first_line(exc)}); it should read "
                         f"{json.dumps(MARKER)}") from None
    if not isinstance(data, dict):
        raise StoreError(f"{marker} is not a valid store marker (not a JSON object); it should read "
                         f"{json.dumps(MARKER)}")
    engine = data.get("engine")
    if engine != ENGINE:
        raise StoreError(f"{marker} names the engine {engine!r}; this is not an embedded LadybugDB circuit store")
    version = data.get("format")
    if isinstance(version, bool) or not isinstance(version, int):
        raise StoreError(f"{marker} has no integer 'format'; it should read {json.dumps(MARKER)}")
    if version != STORE_FORMAT:
        newer = (" (written by a newer sfc-graph: upgrade it)" if version > STORE_FORMAT else
                 " (an older layout: move it aside and `sfc load` its bundles into a new store)")
        raise StoreError(f"the store at {path} has format {version}; this sfc-graph reads format {STORE_FORMAT}{newer}")
    return data


def write_marker(path: Path) -> None:
    """Write the marker atomically (a crash leaves no half-written marker)."""
    tmp = path / f".{MARKER_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(MARKER) + "\n", encoding="utf-8")
    os.replace(tmp, path / MARKER_FILE)


def check_database_file(path: Path) -> None:
    """Before the engine opens it: a marked store's database file must exist and hold something."""
    db = path / DB_FILE
    if not db.exists():
        raise lost_data(path, f"its database file {DB_FILE} is missing (deleted or moved)")
    if db.is_file() and db.stat().st_size == 0:
        raise lost_data(path, f"its database file {DB_FILE} is empty (0 bytes; truncated)")


def unfinished_creation(path: Path) -> bool:
    """A directory holding only database files and no marker: a creation that was interrupted."""
    names = [p.name for p in path.iterdir()]
    return bool(names) and all(n == DB_FILE or n.startswith(DB_FILE + ".") for n in names)


def is_recovery_pending(exc: BaseException) -> bool:
    return any(text in str(exc) for text in _RECOVERY_PENDING)


def is_lock_held(exc: BaseException) -> bool:
    return "Could not set lock on file" in str(exc)


def is_post_commit_failure(exc: BaseException) -> bool:
    return _POST_COMMIT in str(exc)


def engine_error(exc: BaseException, path: Path, *, doing: str) -> StoreError:
    """One sentence for an engine failure while ``doing`` something (open, write to, read) to the store."""
    text = str(exc)
    if is_lock_held(exc):
        pid = _LOCK_PID.search(text)
        who = f" (PID {pid.group(1)})" if pid else ""
        return StoreError(f"another sfc process{who} is writing to the store at {path}; wait for it to finish, "
                          "then try again")
    if is_recovery_pending(exc):
        return StoreError(f"the store at {path} is finishing a write (a checkpoint of another sfc process, or "
                          "of one that was interrupted); try again in a moment, or run any write command "
                          "(e.g. `sfc load`) once to complete it")
    if "No space left" in text or (_looks_like_io(text) and free_bytes(path) < LOW_SPACE_BYTES):
        return StoreError(f"the disk holding the store at {path} is full ({_size(free_bytes(path))} free); "
                          f"free some space and try again")
    if "Permission denied" in text:
        return StoreError(f"permission denied: cannot {doing} the store at {path}")
    if "Read-only file system" in text:
        return StoreError(f"the store at {path} is on a read-only file system; cannot {doing} it")
    return StoreError(f"cannot {doing} the store at {path}: {_first_line(exc)}")


def _looks_like_io(text: str) -> bool:
    return "IO exception" in text or "Cannot write to file" in text or "checkpoint failed" in text


def free_bytes(path: Path) -> int:
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return shutil.disk_usage(probe).free
    except OSError:
        return 1 << 62


def _size(n: int) -> str:
    size = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


__all__ = ["DB_FILE", "MARKER_FILE", "STORE_FORMAT", "StoreDataLost", "read_marker", "write_marker",
           "check_database_file", "engine_error", "is_recovery_pending", "is_lock_held", "is_post_commit_failure",
           "lost_data", "unfinished_creation"]
