"""How many CPU threads torch may use, and how its parallel regions wait (one place for the whole project).

Two failures this module prevents, both measured on a shared 2-core machine (issue 17):

* **Spinning.** torch's CPU wheel runs its parallel regions on GNU OpenMP, whose idle threads spin-wait at
  every barrier. Beside another busy process a spinning thread burns the core the straggler needs, and a
  circuit took 16x longer with torch's default threads than with one. ``OMP_WAIT_POLICY=PASSIVE`` makes
  waiting threads sleep instead; OpenMP reads it once, when torch loads it, so :func:`configure_openmp`
  must run before ``import torch`` — the ``sfc`` entry point calls it first thing.
* **Counting cores that are not ours.** ``os.cpu_count()`` (torch's default) ignores CPU affinity
  (``taskset``, Slurm) and container quotas (cgroup ``cpu.max``), and a machine whose cores are already
  busy has fewer to give. :func:`default_threads` takes the cores this process may run on, caps them by the
  cgroup quota, and leaves out the cores other processes keep busy (measured from ``/proc/stat`` while
  ``sfc`` starts up, see :func:`machine_load`).

    >>> choose_threads(cores=2, load=0.1)
    2
    >>> choose_threads(cores=2, load=1.0)  # one other busy process: one free core
    1
    >>> choose_threads(cores=8, load=20.0)  # oversubscribed: never fewer than one
    1
    >>> choose_threads(cores=16, load=3.4)
    13
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# Values set only where the user has not chosen their own (an explicit environment always wins).
OPENMP_DEFAULTS = {
    "OMP_WAIT_POLICY": "PASSIVE",  # GNU and LLVM OpenMP: sleep at barriers instead of spinning
    "KMP_BLOCKTIME": "0",  # Intel / LLVM OpenMP (some torch builds): the same, in milliseconds of spin
}

CGROUP_ROOT = Path("/sys/fs/cgroup")
MIN_SAMPLE_SECONDS = 0.2  # /proc/stat counts in 10 ms ticks: shorter windows are mostly rounding
# A start-up sample older than this describes a machine that has since changed (a long test session, a
# server that sets its threads late): sample afresh instead of averaging over the whole lifetime.
MAX_START_SAMPLE_AGE = 30.0

_START_SAMPLE = None  # CPU use when configure_openmp ran (process start-up), see machine_load


def configure_openmp(environ: dict[str, str] | None = None) -> bool:
    """Set the OpenMP wait policy for a process that has not imported torch yet.

    Returns False (and changes nothing that could still matter) when torch is already imported: its
    OpenMP runtime has read the environment by then.
    """
    global _START_SAMPLE
    _START_SAMPLE = _START_SAMPLE or cpu_sample()
    env: MutableMapping[str, str] = os.environ if environ is None else environ
    for name, value in OPENMP_DEFAULTS.items():
        env.setdefault(name, value)
    if "torch" in sys.modules:
        log.debug("torch was imported before the OpenMP wait policy was set; it keeps its own")
        return False
    return True


def available_cores() -> int:
    """Cores this process may use: its CPU affinity, capped by a cgroup CPU quota (containers, Slurm)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota)))
    return max(1, cores)


def cgroup_cpu_quota(root: Path = CGROUP_ROOT) -> float | None:
    """The CPU quota of this process's cgroup in cores (``cpu.max`` of cgroup v2, ``cfs_quota`` of v1),
    None without one.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = (Path(tmp) / "cpu.max").write_text("150000 100000\\n")
    ...     cgroup_cpu_quota(Path(tmp))
    1.5
    """
    try:
        text = (root / "cpu.max").read_text().split()
        if text and text[0] != "max":
            return int(text[0]) / int(text[1])
        if text:
            return None
    except (OSError, ValueError, IndexError):
        pass
    try:  # cgroup v1
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class CpuSample:
    """Machine-wide busy CPU seconds and this process's own CPU seconds at one instant."""

    wall: float
    machine_busy: float
    own: float


def cpu_sample() -> CpuSample | None:
    """Now, from ``/proc/stat`` (None where there is none)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    times = os.times()
    busy = (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    return CpuSample(time.monotonic(), busy, times.user + times.system)


def busy_elsewhere(since: CpuSample, now: CpuSample) -> float | None:
    """Cores other processes kept busy between two samples (this process's own CPU time left out)."""
    wall = now.wall - since.wall
    if wall < MIN_SAMPLE_SECONDS:
        return None
    return max(0.0, (now.machine_busy - since.machine_busy - (now.own - since.own)) / wall)


def machine_load() -> float:
    """About how many cores other processes keep busy now.

    Measured over the time since :func:`configure_openmp` (the start-up of ``sfc``: the imports, during
    which this process's own CPU time is subtracted) when that was between MIN_SAMPLE_SECONDS and
    MAX_START_SAMPLE_AGE ago, otherwise over a short sample taken now; the 1-minute load
    average only where ``/proc/stat`` is missing — it lags, and counts the previous run of ``sfc`` itself.
    """
    start = _START_SAMPLE
    now = cpu_sample()
    if now is not None and (start is None
                            or not MIN_SAMPLE_SECONDS <= now.wall - start.wall <= MAX_START_SAMPLE_AGE):
        start = now
        time.sleep(MIN_SAMPLE_SECONDS)
        now = cpu_sample()
    if start is not None and now is not None:
        busy = busy_elsewhere(start, now)
        if busy is not None:
            return busy
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0


def choose_threads(*, cores: int, load: float) -> int:
    """The cores left free by ``load`` busy cores elsewhere, rounded to the nearest core, at least one."""
    free = cores - load
    return max(1, min(cores, math.floor(free + 0.5)))


def default_threads() -> int:
    """torch's intra-op threads when the user does not say: the free cores this process may use."""
    cores, load = available_cores(), machine_load()
    threads = choose_threads(cores=cores, load=load)
    log.info("threads: %d (%d core(s) available, %.2f busy elsewhere)", threads, cores, load)
    return threads


def set_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads to ``threads``, or to :func:`default_threads` when None; returns it."""
    import torch

    chosen = default_threads() if threads is None else threads
    if chosen < 1:
        raise ValueError("threads must be at least 1")
    torch.set_num_threads(chosen)
    return chosen
