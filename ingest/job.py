"""Jobs: many circuits described in one TOML file, split into shards, computed once, loaded once.

    model = "toy-zoo"                 # as --model
    dictionaries = ["toy-zoo"]        # as --dict (a string or a list)
    tasks = ["agreement_simple", "ioi"]
    methods = ["ig"]                  # every task × every method
    out = "bundles"                   # bundle directory, relative to the job file
    device = "auto"
    store = "./sfc-store"             # optional: where `sfc ingest run` loads (--store overrides)

    [settings]                        # CircuitSettings fields shared by every circuit
    node_threshold = 0.1

    [[circuits]]                      # optional extra circuits, each with its own settings
    task = "greater_than"
    method = "exact"
    settings = { n_examples = 16 }

A circuit's bundle is ``out/<circuit_id>``; since the id is a content hash of the inputs, a bundle already
there is the same circuit and is not recomputed, and a circuit already in the store is not reloaded.
Shard ``i`` of ``n`` (from 1) takes circuits ``i, i+n, i+2n, …`` of the job's order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from sfc_graph.errors import ComputeError

from .compute import CircuitSettings, Progress
from .tasks import load_task

log = logging.getLogger(__name__)

JOB_KEYS = {"model", "dictionaries", "tasks", "methods", "method", "out", "device", "store", "settings", "circuits"}


@dataclass(frozen=True)
class CircuitSpec:
    task: str
    settings: CircuitSettings


@dataclass(frozen=True)
class Job:
    path: Path
    model: str
    dictionaries: tuple[str, ...]
    circuits: tuple[CircuitSpec, ...]
    out: Path
    device: str = "auto"
    store: str | None = None


@dataclass
class JobResult:
    circuit_id: str
    path: Path
    computed: bool
    loaded: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` with ``1 <= i <= n``."""
    try:
        index_text, count_text = text.split("/")
        index, count = int(index_text), int(count_text)
    except ValueError:
        raise ComputeError(f"--shard {text!r}: expected I/N, e.g. 1/4") from None
    if count < 1 or not 1 <= index <= count:
        raise ComputeError(f"--shard {text!r}: I must be between 1 and N (shards count from 1)")
    return index, count


def load_job(path: str | Path) -> Job:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ComputeError(f"{path}: no such job file") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ComputeError(f"{path}: not a readable TOML job ({exc})") from None
    unknown = sorted(set(data) - JOB_KEYS)
    if unknown:
        raise ComputeError(f"{path}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(JOB_KEYS))}")
    for key in ("model", "dictionaries"):
        if key not in data:
            raise ComputeError(f"{path}: the job needs {key!r}")
    dictionaries = data["dictionaries"]
    dictionaries = (dictionaries,) if isinstance(dictionaries, str) else tuple(str(d) for d in dictionaries)
    shared = _settings_table(data.get("settings", {}), path, "[settings]")
    methods = data.get("methods", [data["method"]] if "method" in data else [shared.get("method", "ig")])
    specs = []
    for task in _str_list(data.get("tasks", []), path, "tasks"):
        for method in _str_list(methods, path, "methods"):
            specs.append(CircuitSpec(task=_task_spec(task, path), settings=_settings(shared | {"method": method}, path)))
    for number, entry in enumerate(data.get("circuits", []), start=1):
        if not isinstance(entry, dict) or "task" not in entry:
            raise ComputeError(f"{path}: [[circuits]] entry {number} needs a 'task'")
        own = _settings_table(entry.get("settings", {}), path, f"[[circuits]] entry {number}")
        merged = shared | own | ({"method": entry["method"]} if "method" in entry else {})
        specs.append(CircuitSpec(task=_task_spec(str(entry["task"]), path), settings=_settings(merged, path)))
    if not specs:
        raise ComputeError(f"{path}: the job lists no circuits (give 'tasks' or [[circuits]])")
    out = Path(data.get("out", "bundles"))
    return Job(
        path=path,
        model=_resolve(str(data["model"]), path),
        dictionaries=tuple(_resolve_dict(d, path) for d in dictionaries),
        circuits=tuple(specs),
        out=out if out.is_absolute() else path.parent / out,
        device=str(data.get("device", "auto")),
        store=_store_spec(data.get("store"), path),
    )


def _str_list(value: Any, path: Path, key: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ComputeError(f"{path}: {key!r} must be a string or a list of strings")
    return value


def _settings_table(value: Any, path: Path, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ComputeError(f"{path}: {where} must be a table of settings")
    return dict(value)


def _settings(values: dict[str, Any], path: Path) -> CircuitSettings:
    try:
        return CircuitSettings.from_dict(values)
    except (ComputeError, TypeError) as exc:
        raise ComputeError(f"{path}: {exc}") from None


def _resolve(spec: str, job_path: Path) -> str:
    """Relative paths in a job are relative to the job file; names are left alone."""
    candidate = job_path.parent / spec
    return str(candidate) if not Path(spec).is_absolute() and candidate.exists() else spec


def _resolve_dict(spec: str, job_path: Path) -> str:
    if "=" in spec:
        site, _, value = spec.partition("=")
        return f"{site}={_resolve(value, job_path)}"
    return _resolve(spec, job_path)


def _store_spec(value: Any, job_path: Path) -> str | None:
    if value is None:
        return None
    text = str(value)
    if "://" in text or Path(text).is_absolute():
        return text
    return str(job_path.parent / text)


def _task_spec(spec: str, job_path: Path) -> str:
    return _resolve(spec, job_path)


def shard_of(job: Job, index: int, count: int) -> list[CircuitSpec]:
    return [spec for number, spec in enumerate(job.circuits) if number % count == index - 1]


def run_job(
    job: Job,
    *,
    shard: tuple[int, int] = (1, 1),
    store: str | None = None,
    device: str | None = None,
    progress: Progress | None = None,
    report: Callable[[str], None] | None = None,
    executor: str = "local",
    workers: int | None = None,
    address: str | None = None,
) -> list[JobResult]:
    """Compute (unless present) and load (unless loaded into ``store``) every circuit of this shard of ``job``.

    ``store=None`` only writes bundles; pass ``job.store`` to use the job's own store. The store is opened
    before any model is loaded, so that a bad store is reported at once. ``executor="ray"`` computes the
    circuits on a Ray cluster (``ingest/executor.py``) while this process loads each one as it arrives.
    """
    from .executor import CircuitJob, ModelSpec, default_workers, run_circuits

    report = report or (lambda line: log.info(line))
    specs = shard_of(job, *shard)
    if not specs:
        report(f"shard {shard[0]}/{shard[1]} has no circuits (the job has {len(job.circuits)})")
        return []
    results = []
    with _open(store) as target:
        jobs = [CircuitJob(task=load_task(spec.task), settings=spec.settings, out=job.out) for spec in specs]
        model = ModelSpec(model=job.model, dictionaries=job.dictionaries, device=device or job.device)
        for done in run_circuits(model, jobs, executor=executor, workers=workers or default_workers(),
                                 address=address, progress=progress):
            loaded = False
            if target is not None and not target.has_circuit(done.circuit_id):
                loaded = bool(target.load(done.path).loaded)
            results.append(JobResult(circuit_id=done.circuit_id, path=done.path, computed=done.computed,
                                     loaded=loaded))
            report(f"{done.circuit_id}: {'computed' if done.computed else 'already computed'}"
                   + ("" if target is None else f", {'loaded' if loaded else 'already loaded'}") + f" ({done.path})")
    return results


class _NoStore:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _open(spec: str | None):
    if spec is None:
        return _NoStore()
    from sfc_graph.store import open_store

    return open_store(spec)


__all__ = ["CircuitSpec", "Job", "JobResult", "load_job", "parse_shard", "run_job", "shard_of"]
