"""Writing a directory of results without ever destroying what the user had (bundles, reports).

One mechanism for every command that writes a directory:

- :func:`check_destination` runs *before* any computation: the nearest existing ancestor of the
  destination must be a writable directory (not a file), and an existing destination may be replaced only
  when the caller's ``replaceable`` test says it is ours (a bundle: a manifest and nothing but files). The
  current directory and its parents are never replaced.
- :func:`staged_directory` writes into a hidden sibling (``.NAME.sfc-staging-PID-XXXX``) with the user's
  umask, then swaps it in with renames: the old directory is first renamed aside
  (``.NAME.sfc-replaced-PID-XXXX``), the new one renamed in, the old one removed. A crash leaves the old or
  the new directory in place plus a hidden leftover that the next write in that folder removes (only our own
  names, only from processes that are gone and older than this one) — or, killed between the two renames,
  the old one aside, which that next write puts back.
- :func:`strict_json` refuses NaN and infinities, which ``json.dumps`` would write as bare ``NaN``
  (not JSON).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import re
import secrets
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import DestinationError, SfcError

log = logging.getLogger(__name__)

STAGING = "sfc-staging"
REPLACED = "sfc-replaced"
_LEFTOVER = re.compile(rf"^\.(?P<name>.+)\.(?P<kind>{STAGING}|{REPLACED})-(?P<pid>\d+)-[0-9a-f]{{8}}$")
_PROCESS_STARTED = time.time()


def check_destination(
    out: str | os.PathLike[str],
    *,
    overwrite: bool,
    replaceable: Callable[[Path], str | None],
    what: str = "output",
    option: str = "--out",
) -> Path:
    """Refuse, before any work is done, a destination directory that could not or must not be written.

    ``replaceable(path)`` returns None when an existing ``path`` may be replaced, else the reason why not.
    """
    out = Path(out)
    if out.exists() or out.is_symlink():
        if not overwrite:
            raise DestinationError(f"{out}: already exists; choose another {option}, or pass --overwrite to replace "
                                   f"a {what} written by sfc")
        resolved = out.resolve()
        cwd = Path.cwd().resolve()
        if resolved == cwd or resolved in cwd.parents:
            raise DestinationError(f"{out}: refusing to replace the current directory or one of its parents; "
                                   f"give a new {option} directory")
        if out.is_symlink() or not out.is_dir():
            raise DestinationError(f"{out}: is not a directory; --overwrite replaces only a {what} directory")
        reason = replaceable(out)
        if reason:
            raise DestinationError(f"{out}: not replaced, it is not a {what} ({reason}); --overwrite replaces only "
                                   f"a {what} written by sfc, so remove it yourself or choose another {option}")
    parent = _nearest_existing(out.parent if out.parent != Path("") else Path("."))
    if not parent.is_dir():
        raise DestinationError(f"{out}: cannot be created, {parent} is a file, not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DestinationError(f"{out}: cannot be created, permission denied in {parent}")
    return out


def check_file_destination(out: str | os.PathLike[str], *, option: str = "--out") -> Path:
    """Refuse, before any work is done, an output *file* path that cannot be written."""
    out = Path(out)
    if out.is_dir():
        raise DestinationError(f"{out}: is a directory; {option} names a file")
    if out.exists():
        if not os.access(out, os.W_OK):
            raise DestinationError(f"{out}: permission denied; choose another {option}")
        return out
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.exists():
        existing = _nearest_existing(parent)
        if not existing.is_dir():
            raise DestinationError(f"{out}: cannot be created, {existing} is a file, not a directory")
        raise DestinationError(f"{out}: the directory {parent} does not exist; create it first or choose another "
                               f"{option}")
    if not parent.is_dir():
        raise DestinationError(f"{out}: cannot be created, {parent} is a file, not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DestinationError(f"{out}: cannot be created, permission denied in {parent}")
    return out


def check_output_directory(out: str | os.PathLike[str], *, option: str = "--out") -> Path:
    """Refuse, before any work is done, an output directory (files are written into it) that cannot be used."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DestinationError(f"{out}: is a file; {option} names a directory")
    return check_writable_path(out, option=option)


def check_writable_path(out: str | os.PathLike[str], *, option: str = "--out") -> Path:
    """Refuse, before any work is done, a path (file or directory) that cannot be written or created."""
    out = Path(out)
    if out.exists():
        if not os.access(out, os.W_OK | (os.X_OK if out.is_dir() else 0)):
            raise DestinationError(f"{out}: permission denied; choose another {option}")
        return out
    parent = _nearest_existing(out)
    if not parent.is_dir():
        raise DestinationError(f"{out}: cannot be created, {parent} is a file, not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DestinationError(f"{out}: cannot be created, permission denied in {parent}")
    return out


@contextlib.contextmanager
def staged_directory(out: str | os.PathLike[str], *, replace: bool) -> Iterator[Path]:
    """Yield a fresh hidden directory beside ``out``; on success it becomes ``out`` (replacing it if
    ``replace``), on any failure it is removed and ``out`` is left as it was.

    OS errors while writing (a full disk, no permission) become one :class:`DestinationError` sentence.
    """
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        clean_leftovers(out.parent)
        staging = _make_hidden_dir(out, STAGING)
    except OSError as exc:
        raise DestinationError(f"{out}: cannot write ({describe_os_error(exc)})") from None
    try:
        yield staging
        _swap_in(staging, out, replace=replace)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        os_error = as_os_error(exc)
        if os_error is None:
            raise
        raise DestinationError(f"{out}: not written ({describe_os_error(os_error)}); nothing was changed there") from None


_OS_ERROR_TEXT = re.compile(r"\(os error (\d+)\)")


def as_os_error(exc: BaseException) -> OSError | None:
    """The OSError behind ``exc``: itself, or one that a library (polars, pyarrow) reported in words."""
    if isinstance(exc, OSError):
        return exc
    if not isinstance(exc, Exception) or isinstance(exc, SfcError):
        return None
    match = _OS_ERROR_TEXT.search(str(exc))
    if match:
        code = int(match.group(1))
        return OSError(code, os.strerror(code))
    if "No space left on device" in str(exc):
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return None


def _swap_in(staging: Path, out: Path, *, replace: bool) -> None:
    if not (out.exists() or out.is_symlink()):
        os.rename(staging, out)
        return
    if not replace:
        raise DestinationError(f"{out}: appeared while it was being written; nothing was changed there")
    aside = _hidden_name(out, REPLACED)
    os.rename(out, aside)
    try:
        os.rename(staging, out)
    except BaseException:
        os.rename(aside, out)  # put the old one back
        raise
    shutil.rmtree(aside, ignore_errors=True)


def _hidden_name(out: Path, kind: str) -> Path:
    return out.parent / f".{out.name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}"


def _make_hidden_dir(out: Path, kind: str) -> Path:
    for _ in range(100):
        path = _hidden_name(out, kind)
        try:
            os.mkdir(path, 0o777)  # the umask applies, as for any directory the user creates
            return path
        except FileExistsError:
            continue
    raise OSError(errno.EEXIST, "could not find a free staging name", str(out.parent))


def clean_leftovers(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove hidden staging/replaced directories that killed writes left in ``folder``.

    Only our own names (``.NAME.sfc-staging-PID-XXXXXXXX``), only when that process is gone and the
    directory is older than this process: a write still running elsewhere is never touched.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _LEFTOVER.match(entry.name)
        if not match or not entry.is_dir(follow_symlinks=False):
            continue
        pid = int(match["pid"])
        try:
            if pid == os.getpid() or _alive(pid) or entry.stat(follow_symlinks=False).st_mtime >= _PROCESS_STARTED:
                continue
        except OSError:
            continue
        original = Path(folder) / match["name"]
        if match["kind"] == REPLACED and not (original.exists() or original.is_symlink()):
            # Killed between moving the old directory aside and moving the new one in: put the old one back.
            try:
                os.rename(entry.path, original)
                log.warning("restored %s, moved aside by an interrupted write (process %d)", original, pid)
            except OSError:
                pass
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        log.info("removed %s, left by an interrupted write (process %d)", entry.path, pid)
        removed.append(Path(entry.path))
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _nearest_existing(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def describe_os_error(exc: OSError) -> str:
    """An OSError in words a user acts on."""
    if exc.errno == errno.ENOSPC:
        return "no space left on the device; free some space and try again"
    if exc.errno == errno.EDQUOT:
        return "disk quota exceeded"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied{f' on {exc.filename}' if exc.filename else ''}"
    if exc.errno == errno.EROFS:
        return "the file system is read-only"
    if exc.errno == errno.ENOTDIR:
        return f"{exc.filename or 'a part of the path'} is a file, not a directory"
    return exc.strerror or str(exc)


def non_finite_fields(value: Any, where: str = "") -> list[str]:
    """Paths (``evaluation[0].faithfulness``) of the NaN and infinite numbers inside ``value``."""
    if isinstance(value, float):
        return [] if math.isfinite(value) else [where or "(value)"]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in non_finite_fields(v, f"{where}.{k}" if where else str(k))]
    if isinstance(value, (list, tuple)):
        return [p for i, v in enumerate(value) for p in non_finite_fields(v, f"{where}[{i}]")]
    return []


def strict_json(value: Any, *, where: str, **kwargs: Any) -> str:
    """``json.dumps`` that refuses NaN and infinities with a sentence naming the fields."""
    bad = non_finite_fields(value)
    if bad:
        raise DestinationError(f"{where}: not written, {', '.join(bad[:5])} {'is' if len(bad) == 1 else 'are'} "
                               "not a finite number (JSON has no NaN or infinity)")
    return json.dumps(value, allow_nan=False, **kwargs)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def strict_loads(text: str) -> Any:
    """``json.loads`` that refuses the non-standard ``NaN``, ``Infinity`` and ``-Infinity``."""
    return json.loads(text, parse_constant=_refuse_constant)


__all__ = ["DestinationError", "as_os_error", "check_destination", "check_file_destination",
           "check_output_directory", "check_writable_path", "staged_directory",
           "clean_leftovers", "describe_os_error", "strict_json", "strict_loads", "non_finite_fields"]
