"""Every command has help (``-h`` and ``--help``), and ``--help`` does not import torch."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from sfc_graph.cli import main
from sfc_graph.cli.app import COMMANDS


def _all_commands():
    ctx = click.Context(main)
    for name in COMMANDS:
        command = main.get_command(ctx, name)
        assert command is not None, f"sfc {name} is mapped but its module is missing"
        yield [name]
        if isinstance(command, click.Group):
            for sub in command.list_commands(ctx):
                yield [name, sub]


@pytest.mark.parametrize("path", list(_all_commands()), ids=" ".join)
@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_every_command_has_help(path, flag):
    result = CliRunner().invoke(main, [*path, flag])
    assert result.exit_code == 0, result.output
    assert "Usage: " in result.output and " ".join(path) in result.output
    docstring = result.output.split("\n\n")[1].strip()
    assert len(docstring) > 10, f"sfc {' '.join(path)} needs a description"


def test_help_does_not_import_torch():
    code = "import sys; from sfc_graph.cli import main; main(['--help'], standalone_mode=False); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False"
