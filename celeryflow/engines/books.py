"""A caller's ``book=`` and ``flow_detail=`` objects filled as TaskFlow fills them.

TaskFlow's ``engines.load(flow, book=book)`` adds the new flow detail to ``book``
and updates that detail (and a ``flow_detail=`` the caller passed) in place while the
flow runs, so ``book.pformat()`` or ``flow_detail.state`` after ``run()`` shows the
outcome. Here the logbook in the database is the truth: the engine adds its flow
detail to the caller's :class:`~celeryflow.persistence.models.LogBook` when it
persists the flow, and brings the caller's objects up to date in place each time
``run()`` returns or raises.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celeryflow.persistence.backends.base import Backend

LOG = logging.getLogger(__name__)


def fill_book(book: Any, backend: Backend, flow_uuid: str, detail: Any = None) -> None:
    """Bring the caller's ``book`` (a LogBook) and ``detail`` (a FlowDetail) up to date with ``flow_uuid``."""
    from celeryflow.persistence.models import FlowDetail, LogBook

    if not isinstance(book, LogBook) and not isinstance(detail, FlowDetail):
        return
    try:
        fresh = backend.get_flow_details(flow_uuid)
        if isinstance(book, LogBook) and book.created_at is None:
            stored = backend.get_logbook(book.uuid, lazy=True)
            book.created_at, book.updated_at = stored.created_at, stored.updated_at
    except Exception:
        # the caller's copies are a convenience: the logbook in the database stays the truth
        LOG.warning("could not refresh the caller's copy of flow %s", flow_uuid, exc_info=True)
        return
    targets = [detail, book.find(flow_uuid) if isinstance(book, LogBook) else None]
    for target in targets:
        if isinstance(target, FlowDetail) and target is not fresh:
            target.__dict__.update(fresh.__dict__)  # in place: the caller's references see it
    if isinstance(book, LogBook):
        book.add(next((t for t in targets if isinstance(t, FlowDetail)), fresh))


__all__ = ["fill_book"]
