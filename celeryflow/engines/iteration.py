"""``Engine.run_iter()``: TaskFlow's engine states, yielded as the caller sees the flow progress.

TaskFlow's action engine is a state machine; ``run_iter()`` yields its states: ``RESUMING``
once, then rounds of ``SCHEDULING`` (atoms are handed to executors), ``WAITING`` (for one or
more of them to finish) and ``ANALYZING`` (their outcomes decide what comes next), and at
the end the flow's final state (``SUCCESS``, ``REVERTED``, ``SUSPENDED``; a ``FAILURE``
raises at once). celeryflow's scheduler is the logbook, so each yield reports what the
caller observed there:

* ``RESUMING`` -- the flow was persisted and its first atoms were queued (its flow
  ``RUNNING`` notification was delivered);
* ``SCHEDULING`` -- atoms are queued; on the embedded default they start their code only
  when the caller resumes the iterator after this yield (as in TaskFlow, nothing runs
  between two ``next()`` calls: a claimed atom waits at most
  :data:`celeryflow.runtime.localbus.BARRIER_TIMEOUT` seconds for it);
* ``WAITING`` then ``ANALYZING`` -- the caller saw one or more atoms finish (executed,
  failed or reverted): their notifications were delivered just before ``WAITING``; the
  logbook transaction that recorded them already decided and queued what follows;
* then ``SCHEDULING`` again while the flow is not finished.

With remote workers the atoms run on the workers whatever the iterator does: a yield means
"the caller read this from the logbook" (within about 50 ms of the commit), and ``WAITING``
covers whatever finished since the previous poll. ``send(True)`` suspends the flow (atoms
already running finish); ``close()`` suspends it and waits for them before returning.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from celeryflow import states
from celeryflow.engines.waiter import Follower
from celeryflow.runtime import localbus

if TYPE_CHECKING:
    from celeryflow.engines.engine import CeleryEngine
    from celeryflow.persistence.tables import EventRow

#: TaskFlow's action-engine states (taskflow/states.py)
RESUMING = states.RESUMING
SCHEDULING = states.SCHEDULING
WAITING = states.WAITING
ANALYZING = states.ANALYZING
#: atom transitions that end an execution or a revert: each round of them is a WAITING/ANALYZING
FINISHED = frozenset({states.SUCCESS, states.FAILURE, states.REVERTED, states.REVERT_FAILURE})


def run_iter(engine: CeleryEngine, timeout: float | None = None) -> Generator[str, Any, None]:
    """The generator behind :meth:`CeleryEngine.run_iter` (``timeout`` bounds the whole run)."""
    began = time.monotonic()
    after = engine._ready()
    finished = 0

    def on_event(row: EventRow) -> None:
        nonlocal finished
        engine._on_event(row)
        if row.kind == "atom" and row.new_state in FINISHED:
            finished += 1

    with localbus.tapping(engine.flow_uuid) as tap:
        engine._launch()
        follower = Follower(engine.backend, engine.flow_uuid, after)
        polls = follower.polls(on_event, timeout, tap=tap)
        state = next(polls)  # delivers the flow's RUNNING notification; releases no atom yet
        scheduled = follower.scheduled
        closed = False
        try:
            for yielded in (RESUMING, SCHEDULING):
                if (yield yielded):
                    engine.suspend()
            tap.release()
            while state not in states.FLOW_TERMINAL:
                state = next(polls)
                if finished:
                    # TaskFlow's analyze(): SCHEDULING when the finished atoms made others ready,
                    # else WAITING for the rest (counts: queued, running or held by the window)
                    more = state not in states.FLOW_TERMINAL and follower.scheduled > scheduled - finished
                    scheduled, finished = follower.scheduled, 0
                    for yielded in (WAITING, ANALYZING, SCHEDULING) if more else (WAITING, ANALYZING):
                        if (yield yielded):
                            engine.suspend()
                tap.release()  # the atoms claimed before this poll run their code now
        except GeneratorExit:
            closed = True
            engine.suspend()
            for state in polls:  # noqa: B007 - the last one is the flow's final state
                tap.release()
        finally:
            polls.close()
            engine.fill_book()
    engine._ended(state, began)
    if closed:
        return
    if state == states.FAILURE:
        engine.raise_for_state(state)
    yield state
    engine.raise_for_state(state)

