"""The ``celeryflow`` command line.

Subcommands are imported when they run, not to print ``celeryflow --help``: their modules
pull in the engine, SQLAlchemy and Celery (about a second), the top-level help needs only
their one-line summaries, kept here (tests/cli/test_lazy_help.py checks they match).
"""

from __future__ import annotations

import importlib

import click

#: command -> (module:attribute, the first paragraph of its help)
COMMANDS: dict[str, tuple[str, str]] = {
    "conductor": ("celeryflow.cli.conductor_cmd:conductor",
                  "Run the conductor: re-drives orphaned and stalled flows, runs posted jobs."),
    "db": ("celeryflow.cli.db:db", "The logbook database schema."),
    "demo": ("celeryflow.cli.demo:demo",
             "Boot a VM: a failure at attach compensates everything in reverse, then a clean run succeeds."),
    "flows": ("celeryflow.cli.flows:flows", "Flows in the logbook: list, show, resume, suspend, revert, prune."),
    "graph": ("celeryflow.cli.graph:graph",
              "Draw a flow: atoms coloured by state, execution order, compensation order."),
    "flower": ("celeryflow.cli.web:flower",
               "Run Flower with the flow view mounted at /flows (a \"Flows\" entry in its navigation)."),
    "top": ("celeryflow.cli.top:top", "Live view of running flows and workers (Ctrl-C to quit)."),
    "web": ("celeryflow.cli.web:web",
            "Serve the flow view: flows list, live flow pages, actions (opt-in) and /metrics."),
    "worker": ("celeryflow.cli.worker:worker",
               "Run a Celery worker for celeryflow (extra arguments go to `celery worker`)."),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMANDS) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, attribute = target[0].split(":")
        command: click.Command = getattr(importlib.import_module(module), attribute)
        self.commands[cmd_name] = command
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            if name in self.commands:
                rows.append((name, self.commands[name].get_short_help_str(limit)))
            else:
                # Click's own shortening, of the summary kept here
                rows.append((name, click.Command(name, help=COMMANDS[name][1]).get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup)
@click.version_option(package_name="celeryflow")
def cli() -> None:
    """celeryflow: reliable, resumable, revertible workflows on Celery."""


def main() -> None:
    cli()


__all__ = ["COMMANDS", "LazyGroup", "cli", "main"]
