"""The ``pytest11`` entry point: opt-in, like Celery's own pytest plugin.

Installing celeryflow registers this module with pytest; it only adds the options and
activates the fixtures (:mod:`celeryflow.testing.plugin`) when the run asks for them:
``pytest --celeryflow``, ``celeryflow = true`` in the ini file, or, without the entry
point, ``-p celeryflow.testing.plugin`` / ``pytest_plugins = ["celeryflow.testing.plugin"]``.
A suite that does not opt in gets no fixture and no import of Celery from here, so it
sits beside pytest-celery's plugin (or any other) untouched.
"""

from __future__ import annotations

from typing import Any

from celeryflow.testing.options import PLUGIN, add_options, wanted


def pytest_addoption(parser: Any) -> None:
    add_options(parser)


def pytest_configure(config: Any) -> None:
    if wanted(config) and not config.pluginmanager.has_plugin(PLUGIN):
        config.pluginmanager.import_plugin(PLUGIN)
