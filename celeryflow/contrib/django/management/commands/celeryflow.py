"""``manage.py celeryflow <command> …``: the celeryflow CLI with the project's logbook and app.

``manage.py celeryflow flows list``, ``… top``, ``… graph ID -o flow.svg``,
``… db upgrade``: ``CELERYFLOW_BACKEND`` comes from Django settings (the project's
database with ``CELERYFLOW_BACKEND = "django"``).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Run the celeryflow CLI (flows, top, graph, db, worker, conductor) with this project's logbook."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("args", nargs=argparse.REMAINDER,
                            help="celeryflow CLI arguments, e.g. flows list --state RUNNING")

    def run_from_argv(self, argv: list[str]) -> None:
        # Everything after "celeryflow" goes to click untouched (Django's parser would eat --options).
        self.handle(*argv[2:])

    def handle(self, *args: Any, **options: Any) -> None:
        from celeryflow.cli import cli
        from celeryflow.contrib.django import conf

        os.environ["CELERYFLOW_BACKEND"] = conf.logbook_url()
        app = conf.setting("CELERYFLOW_APP")
        if isinstance(app, str) and "CELERYFLOW_APP" not in os.environ:
            os.environ["CELERYFLOW_APP"] = app if ":" in app else ":".join(app.rsplit(".", 1))
        cli.main(args=list(args), prog_name="manage.py celeryflow")
