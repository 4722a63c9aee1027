"""Threading defaults (sfc_graph.threads): core counting from affinity and cgroup quotas, the load rule, and
the OpenMP wait policy set by the ``sfc`` entry point before torch loads."""

from __future__ import annotations

import doctest
import os
import subprocess
import sys

import pytest

from sfc_graph import threads


def test_doctests():
    assert doctest.testmod(threads).failed == 0


@pytest.mark.parametrize(
    ("cores", "load", "expected"),
    [(2, 0.0, 2), (2, 0.4, 2), (2, 0.6, 1), (2, 1.0, 1), (2, 5.0, 1), (16, 0.0, 16), (16, 4.2, 12), (1, 0.0, 1)],
)
def test_choose_threads_leaves_busy_cores_out(cores, load, expected):
    assert threads.choose_threads(cores=cores, load=load) == expected


def test_cgroup_v2_quota(tmp_path):
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert threads.cgroup_cpu_quota(tmp_path) is None
    (tmp_path / "cpu.max").write_text("250000 100000\n")
    assert threads.cgroup_cpu_quota(tmp_path) == 2.5


def test_cgroup_v1_quota(tmp_path):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert threads.cgroup_cpu_quota(tmp_path) is None
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("50000\n")
    assert threads.cgroup_cpu_quota(tmp_path) == 0.5


def test_available_cores_respects_affinity_and_quota(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(threads, "cgroup_cpu_quota", lambda root=threads.CGROUP_ROOT: None)
    assert threads.available_cores() == 4
    monkeypatch.setattr(threads, "cgroup_cpu_quota", lambda root=threads.CGROUP_ROOT: 1.5)
    assert threads.available_cores() == 2


def test_user_environment_wins():
    env = {"OMP_WAIT_POLICY": "ACTIVE"}
    threads.configure_openmp(env)
    assert env["OMP_WAIT_POLICY"] == "ACTIVE" and env["KMP_BLOCKTIME"] == "0"


def test_cli_sets_wait_policy_before_torch_loads():
    """Importing the ``sfc`` entry point must set the policy and must not import torch (OpenMP would have
    read the environment already)."""
    env = {k: v for k, v in os.environ.items() if k not in threads.OPENMP_DEFAULTS}
    code = ("import os, sys; import sfc_graph.cli; "
            "print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["PASSIVE", "False"]


def test_set_threads_applies_the_default(monkeypatch):
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    monkeypatch.setattr(threads, "available_cores", lambda: 3)
    monkeypatch.setattr(threads, "machine_load", lambda: 1.0)
    try:
        assert threads.set_threads() == 2
        assert torch.get_num_threads() == 2
        assert threads.set_threads(1) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_busy_elsewhere_subtracts_own_cpu_time():
    since = threads.CpuSample(wall=10.0, machine_busy=100.0, own=1.0)
    # 2 s of wall; the machine was busy 3.0 core-seconds, 1.0 of them ours: 1 core busy elsewhere
    now = threads.CpuSample(wall=12.0, machine_busy=103.0, own=2.0)
    assert threads.busy_elsewhere(since, now) == pytest.approx(1.0)
    assert threads.busy_elsewhere(since, threads.CpuSample(10.05, 100.1, 1.0)) is None  # too short to tell


def test_machine_load_sees_a_busy_process(monkeypatch):
    """A real competing busy loop is counted (up to the sampling noise of a shared machine).

    The start-up sample is moved to just now: measured from the test session's start, the rival's second
    would vanish into the average of the whole session (the CI failure of stop 18)."""
    rival = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        import time

        time.sleep(0.3)
        monkeypatch.setattr(threads, "_START_SAMPLE", threads.cpu_sample())
        time.sleep(1.0)
        assert threads.machine_load() >= 0.7
    finally:
        rival.kill()
        rival.wait()


def test_machine_load_does_not_average_over_a_long_life(monkeypatch):
    """A start-up sample from long ago is not used: the load is sampled afresh (a rival started after
    start-up counts fully, not diluted over the hour since)."""
    now = threads.cpu_sample()
    if now is None:
        pytest.skip("no /proc/stat")
    old = threads.CpuSample(wall=now.wall - 3600.0, machine_busy=now.machine_busy, own=now.own)
    monkeypatch.setattr(threads, "_START_SAMPLE", old)
    rival = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        import time

        time.sleep(0.3)
        assert threads.machine_load() >= 0.7
    finally:
        rival.kill()
        rival.wait()


@pytest.mark.parametrize("command", [["heads", "compute"], ["ingest", "compute"]])
def test_a_commands_help_does_not_import_torch(command):
    """Options generated from a settings dataclass come from a torch-free module: asking for help is instant."""
    code = ("import sys\nfrom sfc_graph.cli.app import main\n"
            f"try:\n    main({command + ['--help']!r})\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules, file=sys.stderr)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "--out" in out.stdout and out.stderr.split()[-1] == "False"


def test_help_lists_commands_without_importing_torch():
    """``sfc --help`` reads the commands' docstrings from source: no torch, no polars (start-up, issue 17),
    and the listing is the one Click would print by importing every command."""
    code = (
        "import sys, click\n"
        "from sfc_graph.cli.app import main\n"
        "ctx = click.Context(main, info_name='sfc')\n"
        "lazy = ctx.make_formatter(); main.format_commands(ctx, lazy)\n"
        "heavy = 'torch' in sys.modules or 'polars' in sys.modules\n"
        "full = ctx.make_formatter(); click.Group.format_commands(main, ctx, full)\n"
        "print(heavy, lazy.getvalue() == full.getvalue(), 'ingest' in lazy.getvalue())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True", "True"]
