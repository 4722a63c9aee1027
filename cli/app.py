"""The ``sfc`` Click group.

Subcommands are imported only when invoked, so ``sfc --help`` and the store commands never import torch.
Every :class:`~sfc_graph.errors.SfcError` becomes one sentence on stderr and exit status 1, in one place.
"""

from __future__ import annotations

import importlib
import logging

from sfc_graph.threads import configure_openmp

configure_openmp()  # before any command imports torch: OpenMP reads its wait policy once, at load

import click  # noqa: E402

from sfc_graph.errors import SfcError  # noqa: E402

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

# command name -> "module:attribute" inside sfc_graph.cli
COMMANDS = {
    "load": "store_cmds:load",
    "circuits": "store_cmds:circuits",
    "stats": "store_cmds:stats",
    "delete": "store_cmds:delete",
    "neo4j-import-files": "neo4j_cmds:neo4j_import_files",
    "ingest": "ingest_cmds:ingest",
    "zoo": "zoo_cmds:zoo",
    "query": "query_cmds:query",
    "cypher": "query_cmds:cypher",
    "export": "report_cmds:export",
    "compare": "report_cmds:compare",
    "viz": "report_cmds:viz",
    "import": "interop_cmds:import_group",
    "discover": "discover_cmd:discover",
    "demo": "demo_cmd:demo",
    "features": "features_cmds:features",
    "label": "features_cmds:label",
    "serve": "serve_cmd:serve",
    "weights": "weights_cmds:weights",
    "shift": "shift_cmds:shift",
    "eval": "eval_cmds:eval_group",
    "heads": "heads_cmds:heads",
}


class SfcGroup(click.Group):
    """A group that loads commands lazily and turns user errors into one clear sentence."""

    def __init__(self, *args, lazy_commands: dict[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy_commands = lazy_commands or {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy_commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy_commands:
            module_name, attribute = self.lazy_commands[cmd_name].split(":")
            try:
                module = importlib.import_module(f"sfc_graph.cli.{module_name}")
            except ModuleNotFoundError as exc:
                if exc.name == f"sfc_graph.cli.{module_name}":
                    return None  # a room not built yet
                raise
            return getattr(module, attribute)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list of ``sfc --help``, read from the commands' docstrings without importing their
        modules (some import torch at import time; listing commands should take milliseconds)."""
        limit = formatter.width - 6 - max(len(name) for name in self.list_commands(ctx))
        rows = []
        for name in self.list_commands(ctx):
            text = self._docstring(name)
            if text is None:
                command = self.get_command(ctx, name)
                if command is None or command.hidden:
                    continue
                rows.append((name, command.get_short_help_str(limit)))
            else:
                rows.append((name, click.Command(name, help=text).get_short_help_str(limit)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def _docstring(self, cmd_name: str) -> str | None:
        """The docstring of a lazy command's function, parsed from its source (None: import it instead)."""
        if cmd_name not in self.lazy_commands:
            return None
        import ast
        from pathlib import Path

        module_name, attribute = self.lazy_commands[cmd_name].split(":")
        try:
            tree = ast.parse(Path(__file__).with_name(f"{module_name}.py").read_text(encoding="utf-8"))
        except (OSError, SyntaxError):
            return None
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name == attribute:
                return ast.get_docstring(node)
        return None

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except SfcError as exc:
            raise click.ClickException(str(exc)) from None
        except OSError as exc:
            # The environment, not the code: a full disk, a permission, a path that vanished while writing.
            # (Output paths are checked before any work; this catches what changed since.) -v keeps the trace.
            if exc.filename is None and exc.errno is None:
                raise
            from sfc_graph.safe_write import describe_os_error

            logging.getLogger(__name__).debug("operating-system error", exc_info=True)
            where = f"{exc.filename}: " if exc.filename else ""
            raise click.ClickException(f"{where}{describe_os_error(exc)}") from None


@click.group(cls=SfcGroup, lazy_commands=COMMANDS, context_settings=CONTEXT_SETTINGS)
@click.version_option(package_name="sfc-graph", prog_name="sfc")
@click.option("-v", "--verbose", count=True, help="Log more (-v info, -vv debug) to stderr.")
def main(verbose: int) -> None:
    """sfc-graph: compute sparse feature circuits, store them in a graph database, query across them."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
