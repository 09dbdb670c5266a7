"""Readable celeryflow tasks in Flower (and ``celery events``).

celeryflow sends two Celery tasks, ``celeryflow.execute`` and ``celeryflow.revert``,
with a ``shadow`` name ``"celeryflow: <flow> / <atom>"`` (``" (revert)"`` appended
for compensation) and an ``argsrepr`` holding only ids::

    (flow=3f0c…, atom='charge_card', epoch=1)

Store values, inputs and results never travel in a message (workers read them
from the logbook), so Flower, worker logs and ``celery events`` cannot show them.

One Celery detail needs help: the ``task-sent`` event a publisher emits
(``task_send_sent_event``) carries the *real* task name, and Celery's event state
lets a ``task-sent`` event that arrives after the worker's ``task-received``
overwrite the name (a ``PENDING`` event has no merge rule). Flower then shows
``celeryflow.execute`` for some tasks, at random. :func:`name_sent_events_by_shadow`
makes the app's ``task-sent`` events of celeryflow's tasks carry the shadow name;
:func:`celeryflow.install` applies it to every app it installs (workers publish
chain steps too).
"""

from __future__ import annotations

import functools
from typing import Any

#: the Celery task names celeryflow sends (see celeryflow.runtime.dispatch).
TASK_NAMES = frozenset({"celeryflow.execute", "celeryflow.revert"})

_MARK = "_celeryflow_shadow_sent_events"


def name_sent_events_by_shadow(app: Any) -> None:
    """Make ``task-sent`` events of celeryflow's tasks carry their shadow name (idempotent)."""
    amqp = app.amqp
    if getattr(amqp, _MARK, False):
        return
    create = amqp.create_task_message

    @functools.wraps(create)
    def create_task_message(task_id: Any, name: Any, *args: Any, **kwargs: Any) -> Any:
        message = create(task_id, name, *args, **kwargs)
        headers = getattr(message, "headers", None)
        shadow = headers.get("shadow") if isinstance(headers, dict) else None
        sent_event = getattr(message, "sent_event", None)
        if shadow and name in TASK_NAMES and isinstance(sent_event, dict):
            sent_event["name"] = shadow
        return message

    amqp.create_task_message = create_task_message
    setattr(amqp, _MARK, True)


__all__ = ["TASK_NAMES", "name_sent_events_by_shadow"]
