"""The ``celeryflow`` command line."""

from __future__ import annotations

import click

from celeryflow.cli.conductor_cmd import conductor
from celeryflow.cli.db import db
from celeryflow.cli.demo import demo
from celeryflow.cli.flows import flows
from celeryflow.cli.graph import graph
from celeryflow.cli.top import top
from celeryflow.cli.web import flower, web
from celeryflow.cli.worker import worker


@click.group()
@click.version_option(package_name="celeryflow")
def cli() -> None:
    """celeryflow: reliable, resumable, revertible workflows on Celery."""


cli.add_command(demo)
for _command in (worker, conductor, db, flows, top, graph, web, flower):
    cli.add_command(_command)


def main() -> None:
    cli()


__all__ = ["cli", "main"]
