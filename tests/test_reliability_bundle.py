"""Issue 10, items 1, 4 (manifest), 6 (--out checked first) and 10 (staging, modes): writing bundles never
destroys what the user had, and never writes a manifest that is not JSON."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from builders import build_circuit
from sfc_graph.bundle import read_bundle, read_manifest, write_bundle
from sfc_graph.errors import BundleError, SfcError


def _tables(bundle):
    return dict(bundle.manifest), bundle.nodes, bundle.edges


@pytest.fixture
def bundle(tmp_path):
    return build_circuit(tmp_path / "b", "c1")


def test_overwrite_refuses_a_directory_that_is_not_a_bundle(tmp_path, bundle):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "thesis.txt").write_text("years of work")
    with pytest.raises(SfcError, match="not a bundle"):
        write_bundle(notes, *_tables(bundle), overwrite=True)
    assert (notes / "thesis.txt").read_text() == "years of work"


def test_overwrite_refuses_the_current_directory_and_its_parents(tmp_path, bundle, monkeypatch):
    work = tmp_path / "project" / "sub"
    work.mkdir(parents=True)
    (work / "keep.txt").write_text("x")
    # Make the cwd look like a bundle: even then it is never replaced.
    (work / "manifest.json").write_text(json.dumps({"circuit_id": "x", "files": {}}))
    monkeypatch.chdir(work)
    for target in (Path("."), Path(".."), work, work.parent):
        with pytest.raises(SfcError, match="current directory"):
            write_bundle(target, *_tables(bundle), overwrite=True)
    assert (work / "keep.txt").exists()


def test_overwrite_refuses_a_directory_with_a_manifest_and_subdirectories(tmp_path, bundle):
    web = tmp_path / "web"
    (web / "assets").mkdir(parents=True)
    (web / "manifest.json").write_text(json.dumps({"circuit_id": "x", "files": {}}))
    with pytest.raises(SfcError, match="only files"):
        write_bundle(web, *_tables(bundle), overwrite=True)
    assert (web / "assets").is_dir()


def test_overwrite_replaces_a_bundle_atomically(tmp_path, bundle):
    other = build_circuit(tmp_path / "other", "c2", seed=3)
    write_bundle(bundle.path, *_tables(other), overwrite=True)
    assert read_bundle(bundle.path).circuit_id == "c2"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no leftovers


def test_out_below_a_file_is_refused_with_a_sentence(tmp_path, bundle):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(SfcError, match="is a file"):
        write_bundle(tmp_path / "afile" / "b", *_tables(bundle))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_out_on_an_unwritable_path_is_refused(tmp_path, bundle):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(SfcError, match="permission denied"):
        write_bundle(locked / "b", *_tables(bundle))


def test_manifest_with_nan_is_not_written(tmp_path, bundle):
    manifest, nodes, edges = _tables(bundle)
    manifest["evaluation"] = [{"node_threshold": 0.1, "n_nodes": 3, "faithfulness": float("nan"),
                               "completeness": 0.1}]
    with pytest.raises(BundleError, match=r"evaluation\[0\]\.faithfulness"):
        write_bundle(tmp_path / "nan", manifest, nodes, edges)
    assert not (tmp_path / "nan").exists()


def test_manifest_with_bare_nan_is_refused_on_read(bundle):
    text = (bundle.path / "manifest.json").read_text().replace('"faithfulness": 0.8', '"faithfulness": NaN')
    assert "NaN" in text
    (bundle.path / "manifest.json").write_text(text)
    with pytest.raises(BundleError, match="not valid JSON"):
        read_manifest(bundle.path)


def test_bundles_are_written_with_the_users_umask(tmp_path, bundle):
    old = os.umask(0o022)
    try:
        written = write_bundle(tmp_path / "modes", *_tables(bundle))
    finally:
        os.umask(old)
    assert stat.S_IMODE(written.path.stat().st_mode) == 0o755
    assert stat.S_IMODE((written.path / "manifest.json").stat().st_mode) == 0o644


_KILLED_WRITER = """
import os, sys
sys.path.insert(0, {tests!r})
from sfc_graph import safe_write
from builders import build_circuit
safe_write._swap_in = lambda *a, **k: os._exit(9)  # die after writing, before the rename
build_circuit({out!r}, "killed")
"""


def test_staging_left_by_a_killed_write_is_cleaned_by_the_next_write(tmp_path, bundle):
    out = tmp_path / "bundles" / "k"
    code = _KILLED_WRITER.format(tests=str(Path(__file__).parent), out=str(out))
    assert subprocess.run([sys.executable, "-c", code]).returncode == 9
    leftovers = [p for p in out.parent.iterdir() if p.name.startswith(".")]
    assert len(leftovers) == 1 and not out.exists()
    # A staging directory of a process that is still running, or of a stranger's naming, is never touched.
    foreign = out.parent / ".k.somebody-elses"
    foreign.mkdir()
    live = out.parent / f".x.sfc-staging-{os.getppid()}-0123abcd"
    live.mkdir()
    past = time.time() - 3600
    for p in (foreign, live):
        os.utime(p, (past, past))
    from sfc_graph import safe_write

    old = safe_write._PROCESS_STARTED
    safe_write._PROCESS_STARTED = time.time() + 1  # the leftover is older than "this" process
    try:
        write_bundle(out.parent / "next", *_tables(bundle))
    finally:
        safe_write._PROCESS_STARTED = old
    names = {p.name for p in out.parent.iterdir()}
    assert leftovers[0].name not in names
    assert {foreign.name, live.name, "next"} <= names


def test_compute_bundle_checks_out_before_computing(tmp_path, monkeypatch):
    """`--out` below a file is found before the model is even loaded."""
    from sfc_graph.ingest import compute as compute_module

    def must_not_load(*args, **kwargs):
        raise AssertionError("the model was loaded before --out was checked")

    monkeypatch.setattr(compute_module, "load_model", must_not_load)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(SfcError, match="is a file"):
        compute_module.compute_bundle(model="toy-zoo", dictionaries=["toy-zoo"], task="ioi",
                                      out=tmp_path / "afile" / "b")
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.txt").write_text("keep")
    with pytest.raises(SfcError, match="not a bundle"):
        compute_module.compute_bundle(model="toy-zoo", dictionaries=["toy-zoo"], task="ioi", out=notes,
                                      overwrite=True)
    assert (notes / "a.txt").read_text() == "keep"


def test_ingest_compute_overwrite_of_the_current_directory_is_one_sentence(tmp_path, monkeypatch):
    """The issue's own reproduction: `--out . --overwrite` emptied the current directory."""
    from click.testing import CliRunner

    from sfc_graph.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "thesis.txt").write_text("keep")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "n.txt").write_text("keep")
    for out in (".", "notes", ".."):
        result = CliRunner().invoke(main, ["ingest", "compute", "--model", "toy-zoo", "--dict", "toy-zoo",
                                           "--task", "ioi", "--out", out, "--overwrite"])
        assert result.exit_code == 1, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
        assert "not replaced" in result.output or "current directory" in result.output, result.output
    assert (tmp_path / "thesis.txt").read_text() == "keep"
    assert (tmp_path / "notes" / "n.txt").read_text() == "keep"


def test_a_bundle_moved_aside_by_a_killed_replace_is_put_back(tmp_path, bundle):
    """Killed between 'old aside' and 'new in': the next write restores the old bundle, never deletes it."""
    import time as _time

    from sfc_graph import safe_write

    aside = bundle.path.parent / f".{bundle.path.name}.sfc-replaced-999999-0123abcd"
    os.rename(bundle.path, aside)
    past = _time.time() - 3600
    os.utime(aside, (past, past))
    safe_write.clean_leftovers(bundle.path.parent)
    assert read_bundle(bundle.path).circuit_id == "c1"
    assert not aside.exists()
