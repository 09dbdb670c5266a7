"""The consumer-side guard of celeryflow's two Celery tasks: no raw message can stop a worker.

Celery unpacks a task message's body in the worker's *consumer* (the main process), in
``Request.__init__``, before any task code runs. A body that is not the protocol-2
triple ``(args, kwargs, embed)`` (``"hello"``, a short list, raw bytes under a
content type kombu passes through undecoded such as ``application/data`` or
``application/text``) raises there, and Celery treats it as an unrecoverable error:
the worker exits, and every restarted worker exits again on the same message.

:func:`guarded` is the ``Strategy`` of ``celeryflow.execute`` and ``celeryflow.revert``
only (the host app's other tasks keep Celery's default): it checks the message before
Celery's own strategy sees it and rejects a bad one without requeueing it, logging it
once. It also refuses canvas riders celeryflow never sends (callbacks, errbacks,
chords, or a chain naming a task other than its own), so a forged message cannot make
a worker publish arbitrary tasks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery.worker.strategy import default as celery_default

LOG = logging.getLogger("celeryflow.worker")

#: the only content type celeryflow publishes (its tasks use the JSON serializer)
JSON_CONTENT_TYPE = "application/json"
#: task names a celeryflow message may carry in its chain
OWN_TASKS = frozenset({"celeryflow.execute", "celeryflow.revert"})


def problem_with(message: Any) -> str | None:
    """Why ``message`` cannot be a celeryflow task message, or None when it can be handed to Celery."""
    if message.errors:
        # kombu could not even decompress or re-encode it: Celery's own path reports that
        return None
    headers = message.headers or {}
    if not isinstance(headers, dict) or "task" not in headers:
        return "not a protocol 2 task message (no 'task' header)"
    if message.content_type != JSON_CONTENT_TYPE:
        return f"content type {message.content_type!r} (celeryflow messages are {JSON_CONTENT_TYPE})"
    try:
        payload = message.decode()
    except Exception as exc:  # kombu's DecodeError, ContentDisallowed, UnicodeDecodeError, ...
        return f"body does not decode: {type(exc).__name__}: {exc}"
    if not isinstance(payload, (list, tuple)) or len(payload) != 3:
        return f"body is {type(payload).__name__}, not the [args, kwargs, embed] triple"
    args, kwargs, embed = payload
    if not isinstance(args, (list, tuple)) or not isinstance(kwargs, dict) or not isinstance(embed, dict):
        return "body is not [list, dict, dict]"
    for rider in ("callbacks", "errbacks", "chord"):
        if embed.get(rider):
            return f"it carries {rider!r}, which celeryflow never sends"
    chain = embed.get("chain")
    if chain:
        if not isinstance(chain, list) or not all(
            isinstance(step, dict) and step.get("task") in OWN_TASKS for step in chain
        ):
            return "its chain names a task other than celeryflow's own"
    return None


def guarded(task: Any, app: Any, consumer: Any, **kwargs: Any) -> Callable[..., Any]:
    """``Task.Strategy`` for celeryflow's tasks: Celery's default strategy behind a message check."""
    handle = celery_default(task, app, consumer, **kwargs)
    connection_errors = getattr(consumer, "connection_errors", ())

    def task_message_handler(message: Any, body: Any, ack: Any, reject: Any, callbacks: Any,
                             **extra: Any) -> Any:
        reason = problem_with(message)
        if reason is None:
            return handle(message, body, ack, reject, callbacks, **extra)
        headers = message.headers if isinstance(message.headers, dict) else {}
        LOG.error(
            "rejected a celeryflow message (task %.80r, id %.80r, %d bytes): %s; it is dropped, not requeued",
            headers.get("task"), headers.get("id"), len(message.body or b""), reason,
        )
        # Not requeued: a requeued message would stop (or fill) every worker that takes it.
        # On RabbitMQ a dead-letter exchange, if the queue has one, keeps it for inspection.
        message.reject_log_error(LOG, connection_errors, requeue=False)
        return None

    return task_message_handler
