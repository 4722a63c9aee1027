"""Settings live once: every command's --store, --quiet and --device is the shared option of cli/options.py,
and `sfc ingest compute` offers every CircuitSettings field with the dataclass's own default and choices."""

from __future__ import annotations

import dataclasses
import json

import click
import pytest
from click.testing import CliRunner

from builders import build_circuit
from sfc_graph.cli import main
from sfc_graph.cli.options import DEFAULT_STORE, DEVICES, STORE_ENVVAR, quiet_option


def _commands(group: click.Group, ctx: click.Context, prefix: str = ""):
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        path = f"{prefix}{name}"
        if isinstance(command, click.Group):
            yield from _commands(command, click.Context(command, parent=ctx), path + " ")
        else:
            yield path, command


ALL = list(_commands(main, click.Context(main)))
SHARED_QUIET = quiet_option(click.Command("x")).params[0]


def _params(name: str):
    return [(path, p) for path, command in ALL for p in command.params if p.name == name]


def test_the_command_tree_is_walked():
    names = {path for path, _ in ALL}
    assert {"load", "ingest compute", "ingest run", "demo", "query"} <= names


@pytest.mark.parametrize(("path", "option"), _params("store"), ids=lambda v: v if isinstance(v, str) else "")
def test_store_option_is_shared(path, option):
    assert option.opts == ["--store"]
    assert option.envvar == STORE_ENVVAR and option.show_envvar, path
    assert option.default == DEFAULT_STORE, path


@pytest.mark.parametrize(("path", "option"), _params("quiet"), ids=lambda v: v if isinstance(v, str) else "")
def test_quiet_option_is_shared(path, option):
    assert sorted(option.opts) == sorted(SHARED_QUIET.opts), path
    assert option.help == SHARED_QUIET.help, path


@pytest.mark.parametrize(("path", "option"), _params("device"), ids=lambda v: v if isinstance(v, str) else "")
def test_device_option_is_shared(path, option):
    assert isinstance(option.type, click.Choice) and tuple(option.type.choices) == DEVICES, path


def test_store_comes_from_the_environment(tmp_path):
    store = tmp_path / "from-env"
    bundle = build_circuit(tmp_path / "b", "env-circuit")
    runner = CliRunner()
    assert runner.invoke(main, ["load", str(bundle.path)], env={STORE_ENVVAR: str(store)}).exit_code == 0
    listed = runner.invoke(main, ["circuits", "--format", "json"], env={STORE_ENVVAR: str(store)})
    assert listed.exit_code == 0, listed.output
    assert [row["id"] for row in json.loads(listed.output)] == ["env-circuit"]
    assert "env var: SFC_STORE" in runner.invoke(main, ["circuits", "-h"]).output


def test_ingest_compute_options_follow_circuit_settings():
    from sfc_graph.ingest.attribution import ABLATIONS, METHODS
    from sfc_graph.ingest.compute import AGGREGATIONS, CircuitSettings
    from sfc_graph.ingest.metrics import METRICS

    command = dict(ALL)["ingest compute"]
    options = {p.name: p for p in command.params}
    choices = {"method": METHODS, "aggregation": AGGREGATIONS, "metric": METRICS, "ablation": ABLATIONS}
    internal = set(CircuitSettings.EXECUTION_FIELDS) - {"batch_size"}  # tuning knobs with no flag
    for field in dataclasses.fields(CircuitSettings):
        if field.name in internal:
            continue
        assert field.name in options, f"CircuitSettings.{field.name} has no --{field.name.replace('_', '-')}"
        option = options[field.name]
        if field.name == "eval_thresholds":  # a comma-separated list on the command line
            parsed = tuple(float(t) for t in option.default.split(","))
            assert parsed == field.default
            continue
        assert option.default == field.default, field.name
        if field.name in choices:
            assert set(option.type.choices) == set(choices[field.name]), field.name
