"""An atom class only some workers have (a rolling deploy): ``CELERYFLOW_IMPORTS`` names this
module on the new workers only. Its messages go to the ``late`` queue, so a test decides
which workers receive them."""

from __future__ import annotations

from typing import Any

from tests.deploy.atoms import Note


class Late(Note):
    """A :class:`Note` that exists only in the new code."""

    celery_options: Any = {"queue": "late"}
    revert_celery_options: Any = {"queue": "late"}
