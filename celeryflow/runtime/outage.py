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

* After an outage every heartbeat is old, because nobody could write one. The
  grace period that follows is a fact of the logbook, not of one process: every
  heartbeat batch and every sweep writes the ``"pulse"`` row of
  ``celeryflow_liveness`` (:func:`pulse`, the database's clock), and a writer that
  finds the previous pulse older than its silence threshold records a gap. Any
  sweeper, including a beat-driven one in a process that never saw the outage,
  judges heartbeats again only :func:`grace_seconds` after the last gap.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from sqlalchemy import Table, case, insert, select, update
from sqlalchemy.orm import Session

from celeryflow.exceptions import BackendClosed, StorageFailure
from celeryflow.persistence.tables import LivenessRow, db_now, db_utcnow

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
    if isinstance(exc, BackendClosed):
        # this process closed its backend (shutting down, or a test tearing down): no retry
        # can succeed here, and the message must not hold a worker slot while it waits
        LOG.error("celeryflow: %s not run: %s; the conductor's sweep will send it again", what, exc)
        return
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
            if isinstance(exc, BackendClosed):
                # a closed backend never reopens: waiting would only hold this worker slot
                LOG.error("celeryflow: could not record %s (%s); giving up: the conductor's sweep runs the "
                          "atom again once its heartbeat is stale", what, exc)
                return None
            if left <= 0:
                LOG.error("celeryflow: could not record %s for %.0fs (%s); giving up: the conductor's sweep "
                          "runs the atom again once its heartbeat is stale", what, patience, exc)
                return None
            delay = min(countdown(attempt - 1), left)
            LOG.warning("celeryflow: could not record %s (%s); retrying in %.1fs", what, exc, delay)
            sleep(delay)


# ---------------------------------------------------------------------- the logbook's pulse

#: the liveness row written by every heartbeat batch and every sweep
PULSE = "pulse"
_liveness = cast(Table, LivenessRow.__table__)


def grace_seconds(heartbeat_interval: float) -> float:
    """How long after a gap heartbeats are not judged: live workers refresh within two intervals."""
    return 2 * heartbeat_interval + 1.0


def pulse(session: Session, silence: float, *, gap: bool = False) -> None:
    """Record that the logbook can be written now (the database's clock).

    A previous pulse older than ``silence`` seconds means nobody could write (or nobody
    ran) for that long: the gap is recorded, so every sweeper knows heartbeats may be old
    for a reason other than death. ``gap=True``: the caller itself just saw the logbook fail.
    """
    c = _liveness.c
    gap_at: Any = db_utcnow() if gap else case((c.at < db_utcnow(-silence), db_utcnow()), else_=c.gap_at)
    # gap_at first: MySQL assigns left to right, and its test must see the previous pulse
    done = session.execute(
        update(_liveness).where(c.name == PULSE).ordered_values((c.gap_at, gap_at), (c.at, db_utcnow()))
    ).rowcount  # type: ignore[attr-defined]
    if not done:  # the migration inserts the row; re-create it if someone deleted it
        session.execute(insert(_liveness).values(name=PULSE, at=db_utcnow(), gap_at=db_utcnow() if gap else None))


def last_gap(session: Session) -> tuple[dt.datetime, dt.datetime | None]:
    """The database's clock and the last recorded gap in the pulse (None: never)."""
    found = session.execute(select(db_utcnow(), _liveness.c.gap_at).where(_liveness.c.name == PULSE)).first()
    if found is None:
        return db_now(session), None
    now = found[0]
    if isinstance(now, str):
        now = dt.datetime.fromisoformat(now)
    return now, found[1]
