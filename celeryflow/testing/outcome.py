"""What a run did, read back from the logbook: final states, results, and the order of executes and reverts.

The order comes from the flow's event log (one row per state change, in commit order),
so it is the same whichever process ran the atoms: ``("execute", name)`` when an atom
was claimed for execution, ``("revert", name)`` when its compensation started.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from celeryflow import states
from celeryflow.engines.storage import Storage
from celeryflow.persistence.tables import EventRow

if TYPE_CHECKING:
    from celeryflow.compiler import Compilation
    from celeryflow.persistence.backends.base import Backend
    from celeryflow.types.failure import Failure

EXECUTE, REVERT = "execute", "revert"


@dataclass(frozen=True)
class Step:
    """One atom transition from the event log (``Outcome.events``)."""

    id: int
    atom: str
    old: str | None
    new: str | None
    epoch: int

    @property
    def execute_started(self) -> bool:
        return self.new == states.RUNNING and self.old != states.RUNNING

    @property
    def execute_ended(self) -> bool:
        """An execution that finished (succeeded or failed), or was given up on as "may have run"."""
        return self.new in (states.SUCCESS, states.FAILURE) and self.old in (states.RUNNING, states.PENDING)

    @property
    def revert_started(self) -> bool:
        return self.new == states.REVERTING and self.old != states.REVERTING

    @property
    def revert_ended(self) -> bool:
        return self.old == states.REVERTING and self.new in (states.REVERTED, states.REVERT_FAILURE)


def read_steps(backend: Backend, flow_uuid: str, after: int = 0) -> list[Step]:
    """The atom transitions of ``flow_uuid`` with an event id above ``after``, in commit order."""

    def read(session: Any) -> list[Step]:
        rows = session.execute(
            select(EventRow.id, EventRow.atom_name, EventRow.old_state, EventRow.new_state, EventRow.epoch)
            .where(EventRow.flow_uuid == flow_uuid, EventRow.kind == "atom", EventRow.id > after)
            .order_by(EventRow.id)
        )
        return [Step(i, a or "", old, new, epoch) for i, a, old, new, epoch in rows]

    return list(backend.run(read, readonly=True))


def order_of(steps: list[Step]) -> list[tuple[str, str]]:
    """``[("execute"|"revert", atom), ...]`` in the order they started."""
    out: list[tuple[str, str]] = []
    for step in steps:
        if step.execute_started:
            out.append((EXECUTE, step.atom))
        elif step.revert_started:
            out.append((REVERT, step.atom))
    return out


@dataclass
class Outcome:
    """A finished (or stopped) run of one flow.

    Attributes:
        flow_uuid: the flow's id in the logbook.
        state: the flow's state (``SUCCESS``, ``REVERTED``, ``FAILURE``, ``RUNNING`` after a crash...).
        atoms: every atom's state.
        results: what ``engine.storage.fetch_all()`` gives: the store and the succeeded atoms' results.
        order: ``("execute"|"revert", atom)`` in the order they started, during this run.
        history: the same for the flow's whole life (a resumed flow: from its first start).
        failures: the execute failures by atom; ``revert_failures`` the revert ones.
        error: what ``engine.run()`` raised (the original exception of a failed flow), or None.
        events: this run's atom transitions (``Step``), for checks of your own.
        comp: the flow's compilation.
    """

    flow_uuid: str
    state: str
    atoms: dict[str, str]
    results: dict[str, Any]
    order: list[tuple[str, str]]
    history: list[tuple[str, str]]
    failures: dict[str, Failure]
    revert_failures: dict[str, Failure]
    error: BaseException | None
    events: list[Step] = field(repr=False, default_factory=list)
    comp: Compilation | None = field(repr=False, default=None)

    @property
    def executed(self) -> list[str]:
        """Atoms whose execute started during this run, in order (an atom run twice appears twice)."""
        return [atom for what, atom in self.order if what == EXECUTE]

    @property
    def reverted(self) -> list[str]:
        """Atoms whose revert started during this run, in order."""
        return [atom for what, atom in self.order if what == REVERT]

    def __str__(self) -> str:
        lines = [f"flow {self.flow_uuid}: {self.state}"]
        lines += [f"  {what:<7} {atom}" for what, atom in self.order]
        if self.error is not None:
            lines.append(f"  raised {type(self.error).__name__}: {self.error}")
        return "\n".join(lines)


def read_outcome(backend: Backend, comp: Compilation, flow_uuid: str, *, after: int = 0,
                 error: BaseException | None = None) -> Outcome:
    """The :class:`Outcome` of ``flow_uuid`` as the logbook has it now (this run: events after ``after``)."""
    storage = Storage(backend, flow_uuid, comp)
    every = read_steps(backend, flow_uuid)
    states_ = storage.get_atoms_states()
    this_run = [s for s in every if s.id > after]
    return Outcome(
        flow_uuid=flow_uuid,
        state=storage.get_flow_state(),
        atoms={name: states_[name][0] for name in comp.order if name in states_},
        results=storage.fetch_all(),
        order=order_of(this_run),
        history=order_of(every),
        failures=storage.get_execute_failures(),
        revert_failures=storage.get_revert_failures(),
        error=error,
        events=this_run,
        comp=comp,
    )
