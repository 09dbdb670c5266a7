"""What a worker does when the logbook is unreachable.

* Before the atom ran (``begin``, reading the flow): nothing happened yet, so
  the Celery message is retried later (``task.retry`` with a capped,
  jittered, exponential countdown) instead of being acknowledged and lost.
  After :data:`MAX_MESSAGE_RETRIES` the message is dropped with an error: the
  atom is still queued in the logbook and the conductor's sweep sends it again
  once the database is back (the lost-message case).
* After the atom ran (``finish``): its result is only in this process. The
  worker keeps trying to record it, with backoff, for up to
  ``max(heartbeat_timeout * 3, 60 s)`` while the atom's heartbeat stays
  registered (so once the database is back the claim is refreshed at the
  next tick). If it still cannot, it gives up: the atom stays RUNNING, its
  heartbeat goes stale and the sweep runs it again (at-least-once).

Each retry waits; nothing loops tight, and nothing here raises into the worker
except Celery's own ``Retry``.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from celeryflow.exceptions import StorageFailure

if TYPE_CHECKING:
    from celery import Task

LOG = logging.getLogger("celeryflow.worker")

T = TypeVar("T")

#: Celery retries of a message that could not reach the logbook before the sweep takes over
MAX_MESSAGE_RETRIES = 20
#: cap of the countdown between two such retries (seconds)
MAX_COUNTDOWN = 30.0


def countdown(retries: int) -> float:
    """Seconds before retry number ``retries + 1``: 1, 2, 4 ... capped, with jitter."""
    delay = min(MAX_COUNTDOWN, 2.0 ** max(0, retries))
    return delay / 2 + random.uniform(0, delay / 2)


def retry_later(task: Task, exc: StorageFailure, what: str) -> None:
    """Ask Celery to deliver this message again later (raises ``celery.exceptions.Retry``).

    Past :data:`MAX_MESSAGE_RETRIES` it logs and returns: the message is dropped and
    the sweep re-sends the atom (still queued in the logbook) once the database is back.
    """
    retries = int(getattr(task.request, "retries", 0) or 0)
    if retries >= MAX_MESSAGE_RETRIES:
        LOG.error("celeryflow: the logbook stayed unreachable through %d retries of %s; dropping the message, "
                  "the conductor's sweep will send it again: %s", retries, what, exc)
        return
    delay = countdown(retries)
    LOG.warning("celeryflow: the logbook is unreachable (%s); %s retried in %.1fs (retry %d of %d)",
                exc, what, delay, retries + 1, MAX_MESSAGE_RETRIES)
    raise task.retry(countdown=delay, max_retries=MAX_MESSAGE_RETRIES, exc=exc)


def persist(fn: Callable[[], T], what: str, patience: float, sleep: Callable[[float], None] = time.sleep) -> T | None:
    """Run ``fn`` until it stops failing with StorageFailure or ``patience`` seconds passed (then None)."""
    deadline = time.monotonic() + patience
    attempt = 0
    while True:
        try:
            return fn()
        except StorageFailure as exc:
            attempt += 1
            left = deadline - time.monotonic()
            if left <= 0:
                LOG.error("celeryflow: could not record %s for %.0fs (%s); giving up: the conductor's sweep "
                          "runs the atom again once its heartbeat is stale", what, patience, exc)
                return None
            delay = min(countdown(attempt - 1), left)
            LOG.warning("celeryflow: could not record %s (%s); retrying in %.1fs", what, exc, delay)
            sleep(delay)
