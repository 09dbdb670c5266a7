"""The plugin's command-line and ini options, added once whichever way the plugin was loaded.

Loaded by both the ``pytest11`` entry module (:mod:`celeryflow.testing.entry`, always
present once celeryflow is installed) and the plugin itself (``-p
celeryflow.testing.plugin`` works without the entry point too). Imports nothing but pytest.
"""

from __future__ import annotations

import os
from typing import Any

#: environment variable naming the logbook server (as ``--celeryflow-logbook``)
LOGBOOK_ENV = "CELERYFLOW_TEST_LOGBOOK"
#: environment variable naming the broker of the default ``celeryflow_app`` (as ``--celeryflow-broker``)
BROKER_ENV = "CELERYFLOW_TEST_BROKER"
PLUGIN = "celeryflow.testing.plugin"


def add_options(parser: Any) -> None:
    if getattr(parser, "_celeryflow_options", False):
        return
    parser._celeryflow_options = True
    group = parser.getgroup("celeryflow", "celeryflow: testing your flows")
    group.addoption("--celeryflow", action="store_true", default=False,
                    help="activate the celeryflow fixtures (or ini: celeryflow = true; "
                         "or -p celeryflow.testing.plugin)")
    group.addoption("--celeryflow-logbook", default=None, metavar="URL",
                    help="a PostgreSQL or MariaDB/MySQL database URL: each test gets a private schema/database "
                         f"there (default: an SQLite file per test; env {LOGBOOK_ENV})")
    group.addoption("--celeryflow-broker", default=None, metavar="URL",
                    help=f"broker of the default celeryflow_app (default: memory://; env {BROKER_ENV})")
    parser.addini("celeryflow", "activate the celeryflow fixtures", type="bool", default=False)
    parser.addini("celeryflow_logbook", "as --celeryflow-logbook", default="")
    parser.addini("celeryflow_broker", "as --celeryflow-broker", default="")


def setting(config: Any, name: str, env: str) -> str | None:
    """The option ``--celeryflow-<name>``, else the ini ``celeryflow_<name>``, else ``env``; None if unset."""
    value = config.getoption(f"celeryflow_{name}", default=None) or config.getini(f"celeryflow_{name}")
    return str(value or os.environ.get(env) or "") or None


def wanted(config: Any) -> bool:
    """Did the run opt in through the entry point (``--celeryflow`` or ini ``celeryflow = true``)?"""
    return bool(config.getoption("celeryflow", default=False) or config.getini("celeryflow"))
