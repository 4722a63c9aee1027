"""`sfc heads`: the options agree with HeadSettings, a head circuit computed from the CLI loads, and user
mistakes end in one sentence."""

from __future__ import annotations

import dataclasses

import pytest
from click.testing import CliRunner

from sfc_graph.cli.app import main
from sfc_graph.ingest.heads.compute import HeadSettings


def test_every_setting_has_an_option_with_its_default():
    command = main.get_command(None, "heads").get_command(None, "compute")
    options = {p.name: p for p in command.params}
    for field in dataclasses.fields(HeadSettings):
        assert field.name in options, field.name
        if field.name != "method":
            assert options[field.name].default == field.default, field.name


@pytest.fixture(scope="module")
def zoo_ready():
    from sfc_graph import zoo

    if "ioi" not in zoo.task_names():
        pytest.skip("the toy zoo has no ioi task")


@pytest.mark.slow  # a model load, a transformers import and a store: ~10 s of CPU, minutes on a busy machine
def test_compute_load_and_query_a_head_circuit(tmp_path, zoo_ready):
    runner = CliRunner()
    out = tmp_path / "ioi-heads"
    result = runner.invoke(main, ["heads", "compute", "--task", "ioi", "--method", "discrete-sae", "--threads", "1",
                                  "--n-examples", "12", "--epochs", "30", "--seed", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "discrete-sae" in result.output
    store = str(tmp_path / "store")
    assert runner.invoke(main, ["load", str(out), "--store", store]).exit_code == 0
    from sfc_graph.bundle import read_bundle

    bundle = read_bundle(out)
    assert bundle.manifest["settings"]["seed"] == 3 and bundle.manifest["settings"]["epochs"] == 30
    assert {"n_positive_only", "n_union", "edge_score"} <= set(bundle.nodes.columns)
    query = runner.invoke(main, ["query", "head-scores", "-p", "circuit", bundle.circuit_id, "-p", "k", "3",
                                 "--format", "json", "--store", store])
    assert query.exit_code == 0, query.output
    assert query.output.count('"head"') == 3


@pytest.mark.parametrize("args, message", [
    (["--task", "no-such-task"], "no-such-task"),
    (["--task", "ioi", "--n-examples", "0"], "n_examples"),
])
def test_bad_input_is_one_sentence(tmp_path, zoo_ready, args, message):
    result = CliRunner().invoke(main, ["heads", "compute", *args, "--threads", "1", "--out", str(tmp_path / "b")])
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "b").exists()


def test_an_existing_bundle_is_not_replaced(tmp_path, zoo_ready):
    out = tmp_path / "b"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = CliRunner().invoke(main, ["heads", "compute", "--task", "ioi", "--threads", "1", "--out", str(out)])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert (out / "keep.txt").read_text() == "mine"
