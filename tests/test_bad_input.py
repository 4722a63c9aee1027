"""Bad input to ``sfc load``: one clear sentence, a non-zero exit, no traceback, and the store unchanged."""

from __future__ import annotations

import json
import os
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from builders import build_circuit
from sfc_graph.bundle import sha256_file
from sfc_graph.cli import main
from sfc_graph.store import open_store


def _rewrite(bundle: Path, name: str, frame: pl.DataFrame | None = None, raw: bytes | None = None) -> None:
    """Replace one table of a bundle behind the writer's back, keeping the manifest's sha256 consistent."""
    path = bundle / name
    if raw is not None:
        path.write_bytes(raw)
    else:
        frame.write_parquet(path)
    _edit_manifest(bundle, lambda m: m["files"].__setitem__(name, sha256_file(path)))


def _edit_manifest(bundle: Path, change) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    change(manifest)
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def _no_manifest(b: Path) -> None:
    (b / "manifest.json").unlink()


def _truncated_parquet(b: Path) -> None:
    data = (b / "edges.parquet").read_bytes()
    _rewrite(b, "edges.parquet", raw=data[: len(data) // 2])


def _corrupted_parquet(b: Path) -> None:
    data = bytearray((b / "nodes.parquet").read_bytes())
    data[8:64] = b"\x00" * 56
    data[-8:-4] = b"\xff\xff\xff\x7f"  # footer length beyond the file
    _rewrite(b, "nodes.parquet", raw=bytes(data))


def _wrong_dtype(b: Path) -> None:
    nodes = pl.read_parquet(b / "nodes.parquet").with_columns(pl.col("layer").cast(pl.Int32))
    _rewrite(b, "nodes.parquet", nodes)


def _nan_effect(b: Path) -> None:
    nodes = pl.read_parquet(b / "nodes.parquet")
    nodes = nodes.with_columns(pl.when(pl.int_range(pl.len()) == 2).then(float("nan")).otherwise(pl.col("effect")).alias("effect"))
    _rewrite(b, "nodes.parquet", nodes)


def _dangling_edge(b: Path) -> None:
    edges = pl.read_parquet(b / "edges.parquet")
    extra = edges.head(1).with_columns(pl.lit("resid_1/99999").alias("dst"))
    _rewrite(b, "edges.parquet", pl.concat([edges, extra]))


def _sha_mismatch(b: Path) -> None:
    edges = pl.read_parquet(b / "edges.parquet").with_columns(pl.col("weight") * 2)
    edges.write_parquet(b / "edges.parquet")  # manifest not updated


def _unknown_schema_version(b: Path) -> None:
    _edit_manifest(b, lambda m: m.__setitem__("schema_version", 99))


CASES = {
    "missing manifest": (_no_manifest, "manifest.json: missing"),
    "truncated parquet": (_truncated_parquet, "not a readable Parquet file"),
    "corrupted parquet": (_corrupted_parquet, "not a readable Parquet file"),
    "wrong dtype": (_wrong_dtype, "column 'layer' has dtype Int32, expected Int64"),
    "NaN effect": (_nan_effect, "non-finite value(s) (first: NaN)"),
    "dangling edge": (_dangling_edge, "'resid_1/99999' at position -1 is not a node"),
    "sha256 mismatch": (_sha_mismatch, "sha256 is"),
    "unknown schema_version": (_unknown_schema_version, "schema_version 99 is not supported"),
}


def _assert_one_clear_sentence(result, needle: str) -> None:
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: ")
    assert needle in lines[0], lines[0]


@pytest.mark.parametrize("case", list(CASES))
def test_bad_bundle_is_refused_and_store_unchanged(case, tmp_path):
    store = tmp_path / "store"
    build_circuit(tmp_path / "good", "good-circuit", seed=1)
    bad = tmp_path / "bad"
    build_circuit(bad, "bad-circuit", seed=2)
    runner = CliRunner()
    assert runner.invoke(main, ["load", str(tmp_path / "good"), "--store", str(store)]).exit_code == 0
    with open_store(store) as opened:
        before = opened.stats()

    breaker, needle = CASES[case]
    breaker(bad)
    # The good bundle listed first is not loaded either: all bundles are validated before any load.
    build_circuit(tmp_path / "good2", "good-circuit-2", seed=3)
    result = runner.invoke(main, ["load", str(tmp_path / "good2"), str(bad), "--store", str(store)])
    _assert_one_clear_sentence(result, needle)
    with open_store(store) as opened:
        assert opened.stats().equals(before)
        assert opened.circuits()["id"].to_list() == ["good-circuit"]


def test_store_path_that_is_a_file(tmp_path):
    build_circuit(tmp_path / "good", "good-circuit", seed=1)
    not_a_dir = tmp_path / "store.txt"
    not_a_dir.write_text("keep me")
    result = CliRunner().invoke(main, ["load", str(tmp_path / "good"), "--store", str(not_a_dir)])
    _assert_one_clear_sentence(result, "is a file; an embedded store is a directory")
    assert not_a_dir.read_text() == "keep me"


def test_missing_bundle_directory(tmp_path):
    result = CliRunner().invoke(main, ["load", str(tmp_path / "nowhere"), "--store", str(tmp_path / "s")])
    _assert_one_clear_sentence(result, "no such bundle directory")
    assert not (tmp_path / "s").exists()


def test_read_commands_do_not_create_a_store(tmp_path):
    result = CliRunner().invoke(main, ["circuits", "--store", str(tmp_path / "absent")])
    _assert_one_clear_sentence(result, "no circuit store at")
    assert not (tmp_path / "absent").exists()


def test_unreachable_neo4j(tmp_path, monkeypatch):
    build_circuit(tmp_path / "good", "good-circuit", seed=1)
    monkeypatch.setenv("SFC_NEO4J_PASSWORD", "pw-marker-4711")
    result = CliRunner().invoke(main, ["load", str(tmp_path / "good"), "--store", "bolt://127.0.0.1:1"])
    _assert_one_clear_sentence(result, "127.0.0.1:1")
    assert "pw-marker-4711" not in result.output


@pytest.mark.neo4j
@pytest.mark.skipif(not os.environ.get("SFC_NEO4J_URI"), reason="needs a Neo4j server at $SFC_NEO4J_URI")
def test_wrong_neo4j_password(tmp_path, monkeypatch):
    build_circuit(tmp_path / "good", "good-circuit", seed=1)
    monkeypatch.setenv("SFC_NEO4J_PASSWORD", "definitely-not-the-password-4711")
    result = CliRunner().invoke(main, ["load", str(tmp_path / "good"), "--store", os.environ["SFC_NEO4J_URI"]])
    _assert_one_clear_sentence(result, "password")
    assert "definitely-not-the-password-4711" not in result.output
