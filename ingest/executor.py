"""Where circuits are computed: in this process (``local``, the default) or on a Ray cluster (``ray``).

Both executors take the same :class:`CircuitJob` list and yield a :class:`CircuitDone` for each job as it
finishes (in completion order, not submission order), so that one loader in the calling process writes
each bundle into the store as soon as it exists — the embedded store has one writer; Neo4j would take
concurrent loads, but one loader keeps both backends alike.

Ray: one actor per worker holds the model and dictionaries (loaded once per worker, not once per circuit) and
computes one circuit per task it is sent; ``num_gpus=1`` per worker with ``--device cuda``. ``address=None``
starts a local cluster of ``workers`` CPUs (what the tests do); ``address="auto"`` or ``ray://host:10001``
joins an existing one. Bundles are written by the workers to ``out``, which must be a shared filesystem on a
multi-machine cluster. Without Ray, SLURM array jobs get the same split from ``sfc ingest run --shard``.

Ray is optional: ``local`` never imports it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sfc_graph.errors import ComputeError, SfcError

if TYPE_CHECKING:
    from .compute import CircuitSettings, Progress
    from .tasks import Task

log = logging.getLogger(__name__)

EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class CircuitJob:
    """One circuit to compute: its task (examples in memory), its settings, and the bundle directory."""

    task: Task
    settings: CircuitSettings
    out: Path
    key: str = ""  # the caller's name for the job (e.g. a cluster id), handed back in CircuitDone


@dataclass(frozen=True)
class CircuitDone:
    job: CircuitJob
    circuit_id: str
    path: Path
    computed: bool  # False: a valid bundle of the same circuit was already there
    seconds: float
    worker: str


@dataclass(frozen=True)
class ModelSpec:
    """What a worker loads: the same strings as ``--model`` / ``--dict`` / ``--device``."""

    model: str
    dictionaries: tuple[str, ...]
    device: str = "auto"
    threads: int | None = None  # torch intra-op threads of a worker; None: leave as set (Ray workers: 1 each)


class _Worker:
    """Holds a loaded model and dictionaries; computes circuits. Runs in-process or as a Ray actor."""

    def __init__(self, spec: ModelSpec, name: str = "local") -> None:
        from .dictionaries import load_dictionary_set
        from .model import load_model

        if spec.threads:
            import torch

            torch.set_num_threads(spec.threads)
        self.name = name
        self.handle = load_model(spec.model, device=spec.device)
        self.dictionaries = load_dictionary_set(
            list(spec.dictionaries), n_layers=self.handle.n_layers, d_model=self.handle.d_model,
            model_id=self.handle.model_id,
        )

    @classmethod
    def of(cls, handle: Any, dictionaries: Any, name: str = "local") -> _Worker:
        """A worker around a model and dictionaries already loaded in this process."""
        worker = cls.__new__(cls)
        worker.name, worker.handle, worker.dictionaries = name, handle, dictionaries
        return worker

    def compute(self, job: CircuitJob, progress: Progress | None = None) -> CircuitDone:
        from sfc_graph.bundle import MANIFEST, read_bundle
        from sfc_graph.errors import BundleError

        from .compute import circuit_id, compute_circuit

        started = time.perf_counter()
        cid = circuit_id(self.handle, self.dictionaries, job.task, job.settings)
        out = job.out / cid if job.out.name != cid else job.out
        if (out / MANIFEST).is_file():
            try:
                if read_bundle(out).circuit_id == cid:
                    return CircuitDone(job, cid, out, False, time.perf_counter() - started, self.name)
            except BundleError as exc:
                log.warning("%s: recomputing, the bundle there is not valid (%s)", out, exc)
        circuit = compute_circuit(self.handle, self.dictionaries, job.task, job.settings, progress=progress)
        circuit.write(out, overwrite=out.exists())
        return CircuitDone(job, cid, out, True, time.perf_counter() - started, self.name)


def run_circuits(
    spec: ModelSpec,
    jobs: list[CircuitJob],
    *,
    executor: str = "local",
    workers: int = 2,
    address: str | None = None,
    progress: Progress | None = None,
    worker: _Worker | None = None,
) -> Iterator[CircuitDone]:
    """Compute ``jobs``; yield each as it finishes. ``worker`` reuses a model already loaded (local only)."""
    if executor not in EXECUTORS:
        raise ComputeError(f"executor must be one of {', '.join(EXECUTORS)}, not {executor!r}")
    if not jobs:
        return
    if executor == "local":
        local = worker or _Worker(spec)
        for job in jobs:
            yield local.compute(job, progress)
        return
    yield from _run_on_ray(spec, jobs, workers=workers, address=address)


def _run_on_ray(spec: ModelSpec, jobs: list[CircuitJob], *, workers: int, address: str | None) -> Iterator[CircuitDone]:
    try:
        import ray
    except ImportError:
        raise ComputeError("--executor ray needs Ray: pip install 'sfc-graph[ray]' (or pip install ray)") from None
    if workers < 1:
        raise ComputeError("--workers must be at least 1")
    started_here = not ray.is_initialized()
    if started_here:
        options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
        if address:
            options["address"] = address
        else:
            options["num_cpus"] = workers  # GPUs are detected by Ray itself
        try:
            ray.init(**options)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ComputeError(f"cannot start or join the Ray cluster{f' at {address}' if address else ''} ({exc})") from None
    try:
        gpus = 1 if spec.device.startswith("cuda") else 0
        actor_class = ray.remote(num_cpus=1, num_gpus=gpus)(_Worker)
        one_core = dataclasses.replace(spec, threads=spec.threads or 1)  # each worker was given one CPU
        actors = [actor_class.remote(one_core, f"ray-{i}") for i in range(min(workers, len(jobs)))]
        queue, free = list(jobs), list(actors)
        running: dict[Any, Any] = {}  # result ref -> the actor computing it
        while queue or running:
            while queue and free:
                actor = free.pop()
                running[actor.compute.remote(queue.pop(0))] = actor
            (ref,), _ = ray.wait(list(running), num_returns=1)
            free.append(running.pop(ref))
            try:
                result = ray.get(ref)
            except ray.exceptions.RayTaskError as exc:
                # A user's mistake inside a worker (a bad task, a full disk) is still one sentence here.
                cause = getattr(exc, "cause", None)
                if isinstance(cause, SfcError):
                    raise cause from None
                raise
            yield result
    finally:
        if started_here:
            ray.shutdown()


def default_workers() -> int:
    """Worker count for a local Ray cluster: the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


__all__ = ["EXECUTORS", "CircuitDone", "CircuitJob", "ModelSpec", "default_workers", "run_circuits"]
