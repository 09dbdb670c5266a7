"""The ``celeryflow`` command line."""

from __future__ import annotations

import click

from celeryflow.cli.demo import demo


@click.group()
@click.version_option(package_name="celeryflow")
def cli() -> None:
    """celeryflow: reliable, resumable, revertible workflows on Celery."""


cli.add_command(demo)


def main() -> None:
    cli()


__all__ = ["cli", "main"]
