"""``celeryflow --help`` lists the subcommands without importing them (#13 item 9)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import click

from celeryflow.cli import COMMANDS, cli


def test_the_kept_summaries_are_the_commands_own() -> None:
    for name, (target, summary) in COMMANDS.items():
        module, attribute = target.split(":")
        command = getattr(importlib.import_module(module), attribute)
        assert isinstance(command, click.Command) and command.name == name
        assert (command.help or "").split("\n\n")[0].strip() == summary, name


def test_every_command_is_listed() -> None:
    ctx = click.Context(cli)
    assert cli.list_commands(ctx) == sorted(COMMANDS)
    assert all(cli.get_command(ctx, name) is not None for name in COMMANDS)


def test_help_imports_no_subcommand_and_no_engine() -> None:
    code = ("import sys\nfrom celeryflow.cli import cli\n"
            "try:\n    cli(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.startswith(('celeryflow.cli.', 'sqlalchemy', 'celery.'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]", out
    for name in COMMANDS:
        assert name in out
