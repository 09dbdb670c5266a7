"""A caller's ``book=`` filled as TaskFlow fills it.

TaskFlow's ``engines.load(flow, book=book)`` adds the new flow detail to ``book``
and updates that detail while the flow runs, so ``book.pformat()`` (or iterating
the book) after ``run()`` shows the outcome. Here the logbook in the database is
the truth: the engine adds its flow detail to the caller's
:class:`~celeryflow.persistence.models.LogBook` when it persists the flow, and puts
a fresh copy in its place each time ``run()`` returns or raises.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celeryflow.persistence.backends.base import Backend

LOG = logging.getLogger(__name__)


def fill_book(book: Any, backend: Backend, flow_uuid: str) -> None:
    """Put the stored flow detail of ``flow_uuid`` (with its atoms) into ``book``, if it is a LogBook."""
    from celeryflow.persistence.models import LogBook

    if not isinstance(book, LogBook):
        return
    try:
        fd = backend.get_flow_details(flow_uuid)
        if book.created_at is None:
            stored = backend.get_logbook(book.uuid, lazy=True)
            book.created_at, book.updated_at = stored.created_at, stored.updated_at
    except Exception:
        # the caller's copy is a convenience: the logbook in the database stays the truth
        LOG.warning("could not refresh logbook %s with flow %s", book.uuid, flow_uuid, exc_info=True)
        return
    book.add(fd)


__all__ = ["fill_book"]
