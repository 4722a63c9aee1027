"""Threading benchmark: whole ``sfc ingest compute`` processes under each threading setting, alone and beside a
competing CPU-bound process, side by side in one run (issue 17).

    .venv/bin/python benchmarks/bench_threads.py [--task ioi] [--method ig] [--n-examples 32] [--repeats 3]
                                                 [--competitor python|torch] [--threads-values 1,2]

Settings (each a fresh process, the same circuit):

* ``before``: the computation with torch's own defaults (``os.cpu_count()`` threads, OpenMP's default
  spin-waiting), as ``sfc`` ran before issue 17 — started through the library, not the ``sfc`` entry point,
  so that nothing sets the wait policy;
* ``default``: ``sfc ingest compute`` without ``--threads`` (sfc_graph.threads picks the threads and makes
  OpenMP wait passively);
* ``--threads N``: ``sfc ingest compute --threads N`` for every N of ``--threads-values``.

Conditions: ``alone`` (no competitor started by the benchmark; other users' load is printed, it is not zero on
a shared machine) and ``busy`` (one competing process started for the duration of the run: ``python``, a
pure-Python busy loop; ``torch``, a matmul loop with torch's default threads, like another torch job).
Settings are interleaved in rounds, so that a change of the machine's load hits every setting alike; the table
gives medians of wall and CPU seconds, and the default's ratio to the best ``--threads`` value.
Target: default ≤ 1.5× the best ``--threads`` value in both conditions.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SFC = [sys.executable, "-c", "import sys; from sfc_graph.cli import main; sys.argv[0] = 'sfc'; main()"]
COMPETITORS = {
    "python": "while True: pass",
    "torch": "import torch\nx = torch.randn(512, 512)\nwhile True: x = torch.tanh(x @ x / 512)",
}


def library_command(args, out: Path) -> list[str]:
    """The circuit computed through the library with torch's defaults (no sfc_graph.threads)."""
    code = (
        "import sys; from sfc_graph.ingest.compute import CircuitSettings, compute_bundle; "
        f"compute_bundle(model='toy-zoo', dictionaries=['toy-zoo'], task={args.task!r}, out=sys.argv[1], "
        f"overwrite=True, settings=CircuitSettings(method={args.method!r}, n_examples={args.n_examples}))"
    )
    return [sys.executable, "-c", code, str(out)]


def cli_command(args, out: Path, threads: int | None) -> list[str]:
    command = SFC + ["ingest", "compute", "--model", "toy-zoo", "--dict", "toy-zoo", "--task", args.task,
                     "--method", args.method, "--n-examples", str(args.n_examples), "--out", str(out),
                     "--overwrite", "-q"]
    return command + (["--threads", str(threads)] if threads else [])


def clean_environment() -> dict[str, str]:
    """The caller's environment without thread settings, so that each setting is only what it says."""
    drop = {"OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "KMP_BLOCKTIME", "GOMP_SPINCOUNT"}
    return {k: v for k, v in os.environ.items() if k not in drop}


def timed(command: list[str]) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one child process."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=clean_environment(), stdout=subprocess.DEVNULL, cwd=ROOT)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"failed ({process.returncode}): {' '.join(command)}")
    return wall, usage.ru_utime + usage.ru_stime


def run_condition(args, settings: dict[str, list[str]], competitor: str | None) -> dict[str, list[tuple]]:
    rival = None
    if competitor:
        rival = subprocess.Popen([sys.executable, "-c", COMPETITORS[competitor]], env=clean_environment())
        time.sleep(2)  # let it reach full speed (and enter the load average)
    results: dict[str, list[tuple]] = {name: [] for name in settings}
    loads = [os.getloadavg()[0]]
    try:
        for round_ in range(args.repeats):
            for name, command in settings.items():
                results[name].append(timed(command))
                loads.append(os.getloadavg()[0])
                print(f"  {'busy' if competitor else 'alone'} round {round_ + 1} {name}: "
                      f"{results[name][-1][0]:.1f} s wall", file=sys.stderr, flush=True)
    finally:
        if rival:
            rival.kill()
            rival.wait()
    results["_load"] = [(min(loads), max(loads))]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="ioi")
    parser.add_argument("--method", default="ig")
    parser.add_argument("--n-examples", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--competitor", choices=sorted(COMPETITORS), default="python")
    parser.add_argument("--threads-values", default=None, help="comma-separated; default 1..available cores")
    parser.add_argument("--conditions", default="alone,busy")
    args = parser.parse_args()

    from sfc_graph.threads import available_cores, cgroup_cpu_quota

    cores = available_cores()
    values = [int(v) for v in args.threads_values.split(",")] if args.threads_values else list(range(1, cores + 1))
    print(f"machine: {os.cpu_count()} CPUs, {cores} available to this process (affinity "
          f"{len(os.sched_getaffinity(0))}, cgroup quota {cgroup_cpu_quota()}); "
          f"circuit: {args.method} on {args.task}, {args.n_examples} examples; {args.repeats} rounds, medians")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bundle"
        settings = {"before": library_command(args, out), "default": cli_command(args, out, None)}
        settings |= {f"--threads {n}": cli_command(args, out, n) for n in values}
        table = {}
        for condition in args.conditions.split(","):
            competitor = args.competitor if condition == "busy" else None
            table[condition] = run_condition(args, settings, competitor)

    print()
    print(f"{'condition':<10}{'setting':<14}{'wall s':>9}{'CPU s':>9}{'÷ best --threads':>18}")
    for condition, results in table.items():
        best = min(statistics.median(w for w, _ in results[f"--threads {n}"]) for n in values)
        low, high = results["_load"][0]
        for name in settings:
            wall = statistics.median(w for w, _ in results[name])
            cpu = statistics.median(c for _, c in results[name])
            print(f"{condition:<10}{name:<14}{wall:>9.2f}{cpu:>9.2f}{wall / best:>17.2f}x")
        rival = f"+ one {args.competitor} competitor" if condition == "busy" else "no competitor"
        print(f"{'':<10}(load average during the runs {low:.1f}–{high:.1f}, {rival})")


if __name__ == "__main__":
    main()
