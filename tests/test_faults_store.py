"""Fault injection for the embedded store: a process killed before each engine call of a load and of a
delete, and an exception injected at each of those calls, must leave the store exactly as it was before
or exactly as it is after — never in between — and readable by a reader at once.

"Exactly" is checked against reference stores built without faults: the counts of every label and
relationship type, and each surviving circuit read back equal to its bundle. Real LadybugDB, real
SIGKILL-like exits (``os._exit`` in a child process, so no cleanup or close runs).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from builders import build_circuit
from sfc_graph.errors import SfcError
from sfc_graph.store import open_store

# One process imports everything once and forks a child per fault: a fresh interpreter per fault would spend
# most of the suite's time importing. The zygote never runs polars or the engine itself, so forking it is safe.
_ZYGOTE = r"""
import os, sys
import ladybug, polars
from sfc_graph.store import open_store

real_execute = ladybug.Connection.execute

def job(store, action, target, crash_at):
    calls = 0
    window = False  # counting starts at BEGIN TRANSACTION: the calls before it only read (or create tables)

    def counting_execute(self, query, *args, **kwargs):
        nonlocal calls, window
        window = window or (isinstance(query, str) and query.startswith("BEGIN"))
        if window:
            calls += 1
            if calls == crash_at:
                os._exit(77)  # killed: no rollback, no close
        return real_execute(self, query, *args, **kwargs)

    ladybug.Connection.execute = counting_execute
    with open_store(store) as s:
        s.load(target) if action == "load" else s.delete(target)
        with open(store + ".calls", "w") as handle:
            handle.write(str(calls))
        os._exit(0)  # done, but never closed: what was committed must already be durable

for line in sys.stdin:
    store, action, target, crash_at = line.split("\t")
    pid = os.fork()
    if pid == 0:
        try:
            job(store, action, target, int(crash_at))
        finally:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    print(os.waitstatus_to_exitcode(status), flush=True)
"""


class _Zygote:
    def __init__(self):
        self.process = subprocess.Popen([sys.executable, "-c", _ZYGOTE], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)

    def run(self, store: Path, action: str, target: str, crash_at: int) -> int:
        self.process.stdin.write(f"{store}\t{action}\t{target}\t{crash_at}\n")
        self.process.stdin.flush()
        return int(self.process.stdout.readline())

    def close(self):
        self.process.stdin.close()
        self.process.wait(timeout=30)


def _state(store: Path, *, with_circuits: bool = True) -> tuple[list[str], dict, dict]:
    """What a reader sees: the circuit ids, the count of every label and relationship type, the circuits."""
    with open_store(store, read_only=True, create=False) as s:
        ids = sorted(s.circuits()["id"].to_list())
        counts = {(r["what"], r["name"]): r["count"] for r in s.stats().iter_rows(named=True)}
        circuits = {cid: s.read_circuit(cid) for cid in ids} if with_circuits else {}
    return ids, counts, circuits


def _same_circuit(read, bundle) -> bool:
    cols_n = ["node_id", "kind", "position", "effect"]
    cols_e = ["src", "dst", "src_position", "dst_position", "weight"]
    a = read.nodes.select(cols_n).sort("node_id", "position")
    b = bundle.nodes.select(cols_n).sort("node_id", "position")
    c = read.edges.select(cols_e).sort(cols_e[:4])
    d = bundle.edges.select(cols_e).sort(cols_e[:4])
    return a.equals(b) and c.equals(d)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Bundles A and B (sharing features), reference stores holding A, and A and B, and a zygote."""
    # The engine syncs at every commit; on a busy disk that is most of the suite's time, so the stores live on
    # a memory file system when there is one (the crash semantics under test are the engine's, not the disk's).
    shm = Path("/dev/shm")
    root = Path(tempfile.mkdtemp(prefix="sfc-faults-", dir=shm)) if shm.is_dir() and os.access(shm, os.W_OK) \
        else tmp_path_factory.mktemp("faults")
    a = build_circuit(root / "A", "A", seed=1, feature_pool=range(12))
    b = build_circuit(root / "B", "B", seed=2, feature_pool=range(12), task="other")
    only_a, both = root / "ref-A", root / "ref-AB"
    with open_store(only_a) as s:
        s.load(a)
    with open_store(both) as s:
        s.load_many([a, b])
    zygote = _Zygote()
    yield {"root": root, "A": a, "B": b, "states": {"A": _state(only_a), "AB": _state(both)}, "zygote": zygote}
    zygote.close()
    shutil.rmtree(root, ignore_errors=True)


def _check(store: Path, world, allowed: tuple[str, ...]) -> str:
    ids, counts, circuits = _state(store)  # a reader opens it at once, without any write in between
    for name in allowed:
        ref_ids, ref_counts, _ = world["states"][name]
        if ids == ref_ids and counts == ref_counts:
            for cid, read in circuits.items():
                assert _same_circuit(read, world[cid]), f"circuit {cid} differs from its bundle"
            return name
    raise AssertionError(f"in-between state: circuits {ids}, counts {counts}")


def _calls(world, action: str, template: str, target: str) -> int:
    """Engine calls from BEGIN TRANSACTION to COMMIT of one fault-free run."""
    store = world["root"] / f"count-{action}"
    shutil.rmtree(store, ignore_errors=True)
    shutil.copytree(world["root"] / template, store)
    assert world["zygote"].run(store, action, target, 10**9) == 0
    return int(Path(f"{store}.calls").read_text())


@pytest.mark.parametrize("action, template, target, before, after", [
    ("load", "ref-A", "B", "A", "AB"),
    ("delete", "ref-AB", "B", "AB", "A"),
], ids=["load", "delete"])
def test_a_kill_at_every_step_leaves_before_or_after(world, action, template, target, before, after):
    """Killed before BEGIN, before each COPY/statement, before COMMIT, and after COMMIT (never closed)."""
    target_arg = str(world[target].path) if action == "load" else target
    n_calls = _calls(world, action, template, target_arg)
    assert n_calls >= 3  # BEGIN, at least one statement, COMMIT
    seen = []
    for crash_at in range(1, n_calls + 2):  # n_calls + 1: the run completes and exits without closing
        store = world["root"] / f"{action}-{crash_at}"
        shutil.copytree(world["root"] / template, store)
        code = world["zygote"].run(store, action, target_arg, crash_at)
        assert code == (77 if crash_at <= n_calls else 0), (crash_at, code)
        seen.append(_check(store, world, (before, after)))
        shutil.rmtree(store)
    # Every kill up to and including the COMMIT call keeps the old state; only a finished COMMIT shows the new.
    assert seen == [before] * n_calls + [after], f"{action}: {seen}"


class _Injected(RuntimeError):
    pass


@pytest.mark.parametrize("action", ["load", "delete"])
def test_an_engine_error_at_every_step_leaves_the_store_as_it_was(world, action, monkeypatch):
    """An exception at each engine call from BEGIN to COMMIT (what a full disk or an engine failure looks
    like from Python): one sentence, the store unchanged, and the same write succeeds afterwards."""
    import ladybug

    template, before, after = ("ref-A", "A", "AB") if action == "load" else ("ref-AB", "AB", "A")
    target = world["B"] if action == "load" else "B"
    n_calls = _calls(world, action, template, str(world["B"].path) if action == "load" else "B")
    real_execute = ladybug.Connection.execute
    for fail_at in range(1, n_calls + 1):
        store = world["root"] / f"inject-{action}-{fail_at}"
        shutil.copytree(world["root"] / template, store)
        counter = {"n": 0, "window": False}

        def failing_execute(self, query, *args, _at=fail_at, **kwargs):
            counter["window"] = counter["window"] or (isinstance(query, str) and query.startswith("BEGIN"))
            if counter["window"]:
                counter["n"] += 1
                if counter["n"] == _at:
                    raise _Injected("IO exception: injected failure")
            return real_execute(self, query, *args, **kwargs)

        s = open_store(store)
        monkeypatch.setattr(ladybug.Connection, "execute", failing_execute)
        try:
            s.load(target) if action == "load" else s.delete(target)
            outcome = "no error"
        except SfcError as exc:
            outcome = "sentence"
            assert "nothing of this write was kept" in str(exc), str(exc)
        except _Injected:
            outcome = "raw"
        finally:
            monkeypatch.setattr(ladybug.Connection, "execute", real_execute)
            s.close()
        assert outcome == "sentence", (fail_at, outcome)
        assert _check(store, world, (before, after)) == before, fail_at
        if fail_at == n_calls:  # after a failed COMMIT the store takes the same write
            with open_store(store) as s:
                s.load(target) if action == "load" else s.delete(target)
            assert _check(store, world, (after,)) == after
        shutil.rmtree(store)


def test_damaged_files_are_refused_and_left_untouched(world):
    """Damage to each file of a store: a reader and a writer refuse it with one sentence (or read it
    whole); nothing is rewritten or re-created."""
    template = world["root"] / "ref-AB"
    cases = {
        "db-header-garbage": ("graph.lbdb", lambda d: bytes(b ^ 0xFF for b in d[:64]) + d[64:]),
        "db-truncated-half": ("graph.lbdb", lambda d: d[: len(d) // 2]),
        "db-one-page": ("graph.lbdb", lambda d: d[:4096]),
        "db-empty": ("graph.lbdb", lambda d: b""),
        "marker-empty": ("sfc-store.json", lambda d: b""),
        "marker-garbage": ("sfc-store.json", lambda d: b"\x00\xff garbage"),
        "wal-garbage": ("graph.lbdb.wal", lambda d: b"\x13\x37" * 2048),
    }
    for name, (file, damage) in cases.items():
        store = world["root"] / f"damaged-{name}"
        shutil.copytree(template, store)
        path = store / file
        data = path.read_bytes() if path.exists() else b""
        path.write_bytes(damage(data))
        damaged = {p.name: p.read_bytes() for p in store.iterdir()}
        for read_only in (True, False):
            try:
                with open_store(store, read_only=read_only, create=False) as s:
                    ids = sorted(s.circuits()["id"].to_list())
                assert ids == ["A", "B"], f"{name}: opened, but shows {ids}"
            except SfcError as exc:
                assert str(exc), name
            if not read_only:
                continue
            assert {p.name: p.read_bytes() for p in store.iterdir()} == damaged, f"{name}: files were changed"
        shutil.rmtree(store)


def test_faults_reference_states_differ(world):
    """Sanity: the two reference states are distinguishable, so the checks above can fail."""
    a, ab = world["states"]["A"], world["states"]["AB"]
    assert a[0] != ab[0] and a[1] != ab[1]
