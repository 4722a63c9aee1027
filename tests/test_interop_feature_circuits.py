"""Importing the sparse-feature-circuits reference implementation's ``.pt`` circuits.

The files are written here exactly as the reference's ``circuit.py`` writes them: ``torch.save`` of a dict
whose node values are instances of its ``activation_utils.SparseAct`` class (re-created below under that
module name, so that the pickle names the same global) and whose edges are sparse COO tensors.
"""

from __future__ import annotations

import os
import sys
import types

import pytest
import torch
from click.testing import CliRunner

from sfc_graph.bundle import read_bundle
from sfc_graph.cli import main
from sfc_graph.errors import InteropError
from sfc_graph.interop.feature_circuits import import_reference_circuit, load_reference_circuit


@pytest.fixture
def reference_module(monkeypatch):
    """A module named like the reference's ``activation_utils`` with a SparseAct class (fields only)."""
    module = types.ModuleType("activation_utils")

    class SparseAct:
        def __init__(self, act, res=None, resc=None):
            self.act, self.res, self.resc = act, res, resc

    SparseAct.__module__ = "activation_utils"
    SparseAct.__qualname__ = "SparseAct"
    module.SparseAct = SparseAct
    monkeypatch.setitem(sys.modules, "activation_utils", module)
    return module


def _summed_circuit(mod):
    """Two sites (resid_0 → resid_1 → y), d = 3, with known effects and edges."""
    g = torch.Generator().manual_seed(0)
    act0 = torch.tensor([0.5, 0.0, -0.25])
    act1 = torch.tensor([0.0, 1.5, 0.75])
    nodes = {
        "resid_0": mod.SparseAct(act=act0, resc=torch.tensor([0.1])),
        "resid_1": mod.SparseAct(act=act1, resc=torch.tensor([-0.2])),
    }
    dense = torch.zeros(4, 4)  # [d_down + 1, d_up + 1]
    dense[1, 0] = 0.3  # resid_0/0 -> resid_1/1
    dense[2, 2] = -0.4  # resid_0/2 -> resid_1/2
    dense[3, 3] = 0.05  # resid_0/err -> resid_1/err
    dense[1, 3] = torch.randn(1, generator=g).item()  # resid_0/err -> resid_1/1
    to_y = torch.tensor([0.0, 1.5, 0.75, -0.2])  # [d + 1]: resid_1 latents and error -> y
    edges = {"resid_0": {"resid_1": dense.to_sparse()}, "resid_1": {"y": to_y.to_sparse()}}
    return {"examples": [{"clean_prefix": "a b", "clean_answer": "c"}] * 4, "nodes": nodes, "edges": edges}, dense


def test_summed_reference_circuit_imports_with_its_nodes_edges_and_effects(tmp_path, reference_module):
    data, dense = _summed_circuit(reference_module)
    path = tmp_path / "circuit.pt"
    torch.save(data, path)

    loaded = load_reference_circuit(path)
    manifest, nodes, edges = import_reference_circuit(loaded, model="pythia-70m", task="nounpp")

    effects = {row["node_id"]: row["effect"] for row in nodes.iter_rows(named=True)}
    expected_nodes = {"resid_0/0": 0.5, "resid_0/2": -0.25, "resid_0/err": 0.1 * 1.0,
                      "resid_1/1": 1.5, "resid_1/2": 0.75, "resid_1/err": -0.2}
    for node, value in expected_nodes.items():
        assert effects[node] == pytest.approx(value, abs=1e-6)
    assert "resid_0/1" not in effects  # zero effect and no edge
    # output effect: no "y" node in the file -> the summed effect of the last residual stream
    assert effects["output"] == pytest.approx(1.5 + 0.75 - 0.2, abs=1e-6)

    got = {(r["src"], r["dst"]): r["weight"] for r in edges.iter_rows(named=True)}
    expected = {}
    names = lambda site, i: f"{site}/err" if i == 3 else f"{site}/{i}"  # noqa: E731
    for down, up in dense.nonzero().tolist():
        expected[(names("resid_0", up), names("resid_1", down))] = dense[down, up].item()
    for i, w in enumerate([0.0, 1.5, 0.75, -0.2]):
        if w:
            expected[(names("resid_1", i), "output")] = w
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-6)
    assert manifest["aggregation"] == "sum" and manifest["n_examples"] == 4
    assert manifest["dictionaries"]["resid_0"] == {"id": "pythia-70m/resid_0", "kind": "sae", "d_dict": 3}
    assert (nodes["position"] == -1).all() and (edges["src_position"] == -1).all()


def test_positional_reference_circuit_keeps_positions(tmp_path, reference_module):
    mod = reference_module
    seq, d = 3, 2
    act0 = torch.zeros(seq, d)
    act0[0, 1] = 0.7
    act1 = torch.zeros(seq, d)
    act1[2, 0] = -0.9
    nodes = {"embed": mod.SparseAct(act=act0, resc=torch.zeros(seq, 1)),
             "resid_0": mod.SparseAct(act=act1, resc=torch.tensor([[0.0], [0.0], [0.3]]))}
    four = torch.zeros(seq, d + 1, seq, d + 1)  # [s_down, d_down + 1, s_up, d_up + 1]
    four[2, 0, 0, 1] = 0.25  # embed/1 @0 -> resid_0/0 @2
    to_y = torch.zeros(seq, d + 1)
    to_y[2, 0] = -0.9
    to_y[2, 2] = 0.3
    data = {"examples": [], "nodes": nodes,
            "edges": {"embed": {"resid_0": four.to_sparse()}, "resid_0": {"y": to_y.to_sparse()}}}
    path = tmp_path / "pos.pt"
    torch.save(data, path)

    manifest, nodes_frame, edges = import_reference_circuit(load_reference_circuit(path), model="m", task="t")
    assert manifest["aggregation"] == "none"
    keys = {(r["node_id"], r["position"]): r["effect"] for r in nodes_frame.iter_rows(named=True)}
    assert keys[("embed/1", 0)] == pytest.approx(0.7)
    assert keys[("resid_0/0", 2)] == pytest.approx(-0.9)
    assert keys[("resid_0/err", 2)] == pytest.approx(0.3)
    assert ("output", seq - 1) in keys  # the metric is read at the last position
    rows = set(edges.select("src", "src_position", "dst", "dst_position").iter_rows())
    assert rows == {("embed/1", 0, "resid_0/0", 2), ("resid_0/0", 2, "output", 2), ("resid_0/err", 2, "output", 2)}


def test_cli_import_writes_a_bundle_that_loads(tmp_path, reference_module):
    data, _ = _summed_circuit(reference_module)
    path = tmp_path / "circuit.pt"
    torch.save(data, path)
    out, store = tmp_path / "bundle", tmp_path / "store"
    runner = CliRunner()
    result = runner.invoke(main, ["import", "feature-circuits", str(path), "--model", "pythia-70m", "--task",
                                  "nounpp", "--dict", "resid_0=pythia-70m/resid_0/10_32768", "--out", str(out)])
    assert result.exit_code == 0, result.output
    bundle = read_bundle(out)
    assert bundle.manifest["dictionaries"]["resid_0"]["id"] == "pythia-70m/resid_0/10_32768"
    result = runner.invoke(main, ["load", str(out), "--store", str(store)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["query", "top-nodes", "-p", "circuit", bundle.circuit_id, "--store", str(store),
                                  "--format", "json"])
    assert result.exit_code == 0, result.output
    assert "resid_1/1" in result.output


class _Exploit:
    """What a hostile file does: names os.system (or anything) as the constructor of an object."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_a_file_that_would_run_code_is_refused_and_nothing_runs(tmp_path, reference_module):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    data, _ = _summed_circuit(reference_module)
    data["examples"] = _Exploit(marker)
    torch.save(data, path)
    with pytest.raises(InteropError, match="refused: it names (posix|os).system"):
        load_reference_circuit(path)
    assert not marker.exists()
    result = CliRunner().invoke(main, ["import", "feature-circuits", str(path), "--model", "m", "--task", "t",
                                       "--out", str(tmp_path / "b")])
    assert result.exit_code == 1 and "refused" in result.output and "Traceback" not in result.output
    assert not marker.exists() and not (tmp_path / "b").exists()


def test_other_bad_files_get_one_sentence(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file at all")
    with pytest.raises(InteropError, match="not a readable torch file"):
        load_reference_circuit(garbage)
    wrong = tmp_path / "wrong.pt"
    torch.save({"weights": torch.zeros(3)}, wrong)
    with pytest.raises(InteropError, match="expected a dict with 'nodes' and 'edges'"):
        load_reference_circuit(wrong)
    with pytest.raises(InteropError, match="no such file"):
        load_reference_circuit(tmp_path / "missing.pt")


def test_edge_shape_mismatch_is_refused(reference_module):
    data, dense = _summed_circuit(reference_module)
    data["edges"]["resid_0"]["resid_1"] = torch.zeros(5, 4).to_sparse()
    with pytest.raises(InteropError, match=r"has shape \(5, 4\); expected \[4, 4\]"):
        import_reference_circuit(data, model="m", task="t")
