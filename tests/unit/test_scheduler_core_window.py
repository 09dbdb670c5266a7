"""The core's dispatch-window rules under random runs, with no database (a Hypothesis machine).

An in-memory flow (a random DAG) is driven only by :mod:`celeryflow.scheduler`'s rules,
the way the transactions apply them: the start admits the sources, a finishing atom
counts into its successors and admits the ready ones (``admit_successors`` on the fast
path; ``admit`` then ``refill_due`` on the general path, which a finish takes when
``finish_needs_general_path`` says held atoms may be due), and ``settle.decide`` ends the
flow. Workers claim and finish queued atoms in any order. Checked after every step:

* at most ``window`` atoms are queued or running (scheduler-core.md, invariant 6);
* ``held`` is exactly the number of ready atoms not queued (none is lost or counted twice);
* a flow with nothing in flight holds nothing (invariant 5: never silently quiet);
* at the end every atom succeeded and ``settle`` says SUCCEED.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from celeryflow import states
from celeryflow.scheduler import admission, claim, settle
from celeryflow.scheduler.snapshot import AtomSnap, FlowSnap


@dataclass
class Atom:
    preds: list[int]
    succs: list[int]
    state: str = states.PENDING
    waiting: int = 0
    queued: bool = False

    def snap(self, name: str) -> AtomSnap:
        return AtomSnap(name, self.state, states.EXECUTE, queued=self.queued, waiting=self.waiting)


@st.composite
def dags(draw: st.DrawFn) -> list[Atom]:
    count = draw(st.integers(min_value=1, max_value=24))
    atoms = [Atom([], []) for _ in range(count)]
    for index in range(1, count):
        for pred in draw(st.sets(st.integers(min_value=0, max_value=index - 1), max_size=3)):
            atoms[index].preds.append(pred)
            atoms[pred].succs.append(index)
    for atom in atoms:
        atom.waiting = len(atom.preds)
    return atoms


class WindowMachine(RuleBasedStateMachine):
    """One flow, its counters as the flow row keeps them, moved only by the core's rules."""

    def __init__(self) -> None:
        super().__init__()
        self.atoms: list[Atom] = []
        self.window = 1
        self.outstanding = 0
        self.held = 0
        self.state = states.PENDING

    @initialize(atoms=dags(), window=st.integers(min_value=1, max_value=6))
    def start(self, atoms: list[Atom], window: int) -> None:
        self.atoms, self.window, self.state = atoms, window, states.RUNNING
        sources = [str(i) for i, atom in enumerate(atoms) if not atom.preds]
        self._queue(admission.admit(sources, 0, 0, window))

    def _queue(self, admitted: admission.Admitted) -> None:
        for name in admitted.queue:
            self.atoms[int(name)].queued = True
        self.outstanding += len(admitted.queue)
        self.held = admitted.held

    def _ready_unqueued(self) -> list[str]:
        return [str(i) for i, a in enumerate(self.atoms)
                if admission.ready_to_execute(a.waiting, a.state, states.EXECUTE, a.queued)]

    def _flow(self) -> FlowSnap:
        return FlowSnap("f", "flow", self.state, 1, self.outstanding, self.held)

    @precondition(lambda self: any(a.queued for a in self.atoms))
    @rule(pick=st.integers(min_value=0))
    def claim(self, pick: int) -> None:
        queued = [i for i, a in enumerate(self.atoms) if a.queued]
        atom = self.atoms[queued[pick % len(queued)]]
        decided = claim.decide(self._flow(), 1, claim.EXECUTE, False)
        assert decided.verdict is claim.Verdict.RUN and atom.state in decided.olds
        atom.state, atom.queued = decided.new, False

    @rule(pick=st.integers(min_value=0), stale=st.booleans())
    def duplicate_or_stale_message(self, pick: int, stale: bool) -> None:
        """A redelivered message (its atom no longer queued) or one of an older epoch changes nothing."""
        if not self.atoms:
            return
        index = pick % len(self.atoms)
        atom = self.atoms[index]
        decided = claim.decide(self._flow(), 0 if stale else 1, claim.EXECUTE, False)
        if stale:
            assert decided.verdict is claim.Verdict.SKIP
        elif decided.verdict is claim.Verdict.RUN and atom.queued and atom.state in decided.olds:
            self.claim(sum(a.queued for a in self.atoms[:index]))  # it was queued: this is its delivery
        # otherwise the compare-and-set (state, intention, queued) finds the atom moved: nothing

    @precondition(lambda self: any(a.state == states.RUNNING for a in self.atoms))
    @rule(pick=st.integers(min_value=0))
    def finish(self, pick: int) -> None:
        running = [i for i, a in enumerate(self.atoms) if a.state == states.RUNNING]
        atom = self.atoms[running[pick % len(running)]]
        states.check_atom_transition(atom.state, states.SUCCESS, "a")
        atom.state = states.SUCCESS
        for succ in atom.succs:
            self.atoms[succ].waiting -= 1
        successors = [str(s) for s in atom.succs]
        if admission.finish_needs_general_path(self.held, self.outstanding, self.window):
            # the general path: logbook.queue_ready's admit, then settle's refill of held atoms
            self.outstanding -= 1
            ready = [s for s in successors if s in set(self._ready_unqueued())]
            self._queue(admission.admit(ready, self.outstanding, self.held, self.window))
            want = admission.refill_due(self.held, self.outstanding, self.window, self.state)
            if want:
                found = self._ready_unqueued()[:want]
                for name in found:
                    self.atoms[int(name)].queued = True
                self.outstanding += len(found)
                self.held = admission.held_after_refill(self.held, want, len(found))
        else:
            joins = {s: self.atoms[int(s)].snap(s) for s in successors}
            admitted = admission.admit_successors(successors, joins, self.outstanding, self.held, self.window)
            self.outstanding -= 1
            self._queue(admitted)
        unfinished = sum(a.state not in states.ATOM_DONE for a in self.atoms)
        if settle.needs_unfinished_count(self.state, self.outstanding, False):
            decided = settle.decide(self.state, self.outstanding, False, unfinished=unfinished)
            assert decided is settle.Next.SUCCEED, f"quiet with {unfinished} unfinished atoms, {self.held} held"
            self.state = states.SUCCESS

    @invariant()
    def at_most_window_in_flight(self) -> None:
        in_flight = sum(a.queued or a.state == states.RUNNING for a in self.atoms)
        assert in_flight == self.outstanding <= self.window

    @invariant()
    def held_counts_exactly_the_ready_unqueued(self) -> None:
        if self.state == states.RUNNING:
            assert self.held == len(self._ready_unqueued())

    @invariant()
    def nothing_in_flight_means_nothing_held(self) -> None:
        if self.atoms and self.outstanding == 0:
            assert self.held == 0 and self.state == states.SUCCESS

    def teardown(self) -> None:
        # drive to the end: the flow always finishes, through the same rules
        while self.state == states.RUNNING:
            if any(a.queued for a in self.atoms):
                self.claim(0)
            self.finish(0)
        assert all(a.state == states.SUCCESS for a in self.atoms)


WindowMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=60, deadline=None)
test_the_window_rules = WindowMachine.TestCase
