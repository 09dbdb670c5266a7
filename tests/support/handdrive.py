"""Driving the scheduler by hand, without Celery: what the engine, the workers and the sweep run.

A :class:`HandFlow` is a flow persisted in a logbook; its methods call the same
transactions a worker (``steps.begin`` / ``steps.finish`` / ``steps.refuse``), the
sweep (``reclaim.reclaim``) and the caller (``control.start`` / ``request_revert``)
run, so every intermediate state can be looked at, on every backend.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

from sqlalchemy import select, update

from celeryflow import engines, states, task
from celeryflow.persistence.backends import fetch
from celeryflow.persistence.tables import AtomRow, EventRow, FlowRow, utcnow
from celeryflow.runtime import control, reclaim, steps
from celeryflow.runtime.logbook import EXECUTE, REVERT, Dispatch

#: heartbeat timeout the hand-driven sweep and resume use
TIMEOUT = 10.0
#: a moment at which every heartbeat written "now" is stale
LATER = dt.timedelta(seconds=TIMEOUT + 1)

FAILURE = {"exc_type_names": ["ValueError", "Exception"], "exception_str": "boom", "traceback_str": "",
           "exc_args": ["boom"]}


class Step(task.Task):
    """A no-op atom (never executed here: the test plays the worker)."""

    def execute(self) -> str:
        return str(self.name)


def only(dispatch: Dispatch, *names: str) -> Dispatch:
    """The part of ``dispatch`` that names ``names`` (to deliver its messages in a chosen order)."""
    return Dispatch(dispatch.flow_uuid, dispatch.flow_name, dispatch.epoch,
                    execute=[n for n in dispatch.execute if n in names],
                    revert=[n for n in dispatch.revert if n in names])


class HandFlow:
    """A flow persisted in ``url``'s logbook, driven by calling the scheduler's transactions."""

    def __init__(self, url: str, flow: Any) -> None:
        engine = engines.load(flow, backend=url)
        engine.prepare()
        self.backend = fetch(url)
        self.comp = engine.compile()
        self.id = engine.flow_uuid
        #: outcome of every delivery: (mode, atom) -> number of times it was claimed and run
        self.claimed: Counter[tuple[str, str]] = Counter()

    # -- the caller ------------------------------------------------------------------------
    def start(self) -> Dispatch:
        return control.start(self.backend, self.comp, self.id, owner="test")

    def request_revert(self) -> Dispatch:
        return control.request_revert(self.backend, self.comp, self.id, owner="test")

    # -- a worker --------------------------------------------------------------------------
    def begin(self, name: str, worker: str, mode: str = EXECUTE, epoch: int | None = None) -> steps.Begun:
        begun = steps.begin(self.backend, self.comp, self.id, name, self.epoch if epoch is None else epoch, mode,
                            worker)
        if begun.verdict is steps.Verdict.RUN:
            self.claimed[(mode, name)] += 1
        return begun

    def finish(self, name: str, worker: str, epoch: int, mode: str = EXECUTE, fail: bool = False) -> Dispatch | None:
        return steps.finish(self.backend, self.comp, self.id, name, epoch, mode, worker,
                            result=None if fail else name, failure=FAILURE if fail else None)

    def deliver(self, dispatch: Dispatch | None, worker: str = "w:9", fail: frozenset[str] = frozenset()) -> None:
        """Deliver ``dispatch``'s messages and everything they lead to, one at a time, as one worker would."""
        todo: list[tuple[str, str, int]] = []

        def add(d: Dispatch | None) -> None:
            if d is not None:
                todo.extend((n, EXECUTE, d.epoch) for n in d.execute)
                todo.extend((n, REVERT, d.epoch) for n in d.revert)

        add(dispatch)
        while todo:
            name, mode, epoch = todo.pop(0)
            begun = self.begin(name, worker, mode, epoch)
            if begun.verdict is steps.Verdict.REFUSE:
                add(steps.refuse(self.backend, self.comp, self.id, name, epoch, worker, mode))
            elif begun.verdict is steps.Verdict.RUN:
                add(self.finish(name, worker, epoch, mode, fail=mode == EXECUTE and name in fail))

    # -- the sweep -------------------------------------------------------------------------
    def reclaim(self, now: dt.datetime) -> reclaim.Outcome:
        return reclaim.reclaim(self.backend, self.comp, self.id, now=now, heartbeat_timeout=TIMEOUT,
                               max_deliveries=5, owner="sweeper")

    def age_heartbeat(self, name: str) -> None:
        """Make ``name``'s heartbeat older than any timeout (a day): its worker died."""
        old = utcnow() - dt.timedelta(days=1)
        self.backend.run(lambda s: s.execute(
            update(AtomRow).where(AtomRow.flow_uuid == self.id, AtomRow.name == name).values(heartbeat_at=old)))

    # -- looking -----------------------------------------------------------------------------
    @property
    def epoch(self) -> int:
        return self.row().epoch

    def row(self) -> FlowRow:
        def read(session: Any) -> FlowRow:
            row = session.get(FlowRow, self.id)
            session.expunge(row)
            return row

        return self.backend.run(read)

    @property
    def state(self) -> str:
        return self.row().state

    def atoms(self) -> dict[str, AtomRow]:
        def read(session: Any) -> dict[str, AtomRow]:
            rows = session.scalars(select(AtomRow).where(AtomRow.flow_uuid == self.id)).all()
            for r in rows:
                session.expunge(r)
            return {r.name: r for r in rows}

        return self.backend.run(read)

    def atom_states(self) -> dict[str, str]:
        return {n: r.state for n, r in self.atoms().items()}

    def transitions(self, new_state: str) -> Counter[str]:
        """How many times each atom moved to ``new_state``, per the event log."""

        def read(session: Any) -> list[tuple[str | None, str | None, str | None]]:
            return list(session.execute(
                select(EventRow.atom_name, EventRow.old_state, EventRow.new_state)
                .where(EventRow.flow_uuid == self.id, EventRow.kind == "atom")
            ).all())

        return Counter(a or "" for a, old, new in self.backend.run(read) if new == new_state and old != new_state)


def reverted_once(flow: HandFlow, names: set[str]) -> bool:
    """Each of ``names`` was claimed for revert once and recorded REVERTED once; nothing else was."""
    reverts = {n: c for (mode, n), c in flow.claimed.items() if mode == REVERT}
    return reverts == dict.fromkeys(names, 1) and flow.transitions(states.REVERTED) == Counter(dict.fromkeys(names, 1))
