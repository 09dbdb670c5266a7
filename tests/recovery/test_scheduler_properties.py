"""The scheduler's invariants under random interleavings (a Hypothesis state machine).

Several "workers" take messages from a bag in any order, duplicate them, lose them,
die mid-execute or mid-revert, report late after they were given up on; the sweep
runs at random; the caller asks for a revert or a resume at random. Every step goes
through the real transactions (``steps.begin`` / ``finish`` / ``refuse``,
``reclaim.reclaim`` / ``redrive``, ``control.start`` / ``request_revert``) on a real
logbook. Checked after every step and at the end (docs/architecture.md, the scheduler
core's invariants):

1. every recorded transition is one the state tables allow;
2. a result is recorded only by the claim that is current (late reports of a
   superseded claim change nothing);
3. an atom that was claimed for execute is, when its flow ends REVERTED, reverted
   exactly once; nothing that was never claimed is reverted;
4. nothing is claimed for revert while a live execute claim on it is current, and
   nothing is claimed again while a live claim on it is current;
5. once the workers stop failing, the flow always finishes (the sweep re-drives what
   was lost): no flow is silently quiet.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import select, update

from celeryflow import states
from celeryflow.patterns import graph_flow, linear_flow, unordered_flow
from celeryflow.persistence.tables import AtomRow, EventRow, FlowRow, utcnow
from celeryflow.runtime import control, reclaim, steps
from celeryflow.runtime.logbook import EXECUTE, REVERT, Dispatch
from tests.fixtures_db import mariadb_database, postgres_database
from tests.support.handdrive import FAILURE, HandFlow, Step

pytestmark = [pytest.mark.crash, pytest.mark.timeout(900)]

#: the heartbeat timeout the sweep and resume judge by: far beyond any example's length, so
#: only the workers this machine kills look dead (their heartbeats are aged by a day), and
#: every run of an example sees the same outcomes (Hypothesis replays examples)
TIMEOUT = 3600.0


def linear() -> Any:
    return linear_flow.Flow("line").add(Step("a"), Step("b"), Step("c"))


def fan() -> Any:
    return unordered_flow.Flow("fan").add(Step("a"), Step("b"), Step("c"))


def diamond() -> Any:
    a, b, c, d = Step("a"), Step("b"), Step("c"), Step("d")
    return graph_flow.Flow("diamond").add(a, b, c, d).link(a, b).link(a, c).link(b, d).link(c, d)


SHAPES = {"linear": linear, "fan": fan, "diamond": diamond}


@dataclass(frozen=True)
class Message:
    name: str
    mode: str
    epoch: int


@dataclass(frozen=True)
class Claim:
    name: str
    mode: str
    epoch: int
    worker: str
    token: str


class SchedulerMachine(RuleBasedStateMachine):
    """One flow, a bag of messages, live and dead claims; the real transactions in between."""

    def __init__(self, kind: str = "sqlite") -> None:
        super().__init__()
        self.kind = kind
        self.tmp = Path(tempfile.mkdtemp(prefix="cf-props-"))
        self.databases = contextlib.ExitStack()
        self.bag: list[Message] = []
        self.live: list[Claim] = []
        self.dead: list[Claim] = []
        self.executed: set[str] = set()  # ever claimed for execute: it may have run
        self.workers = (f"w:{i}" for i in itertools.count(1))

    # -- set-up ----------------------------------------------------------------------------
    @initialize(shape=st.sampled_from(sorted(SHAPES)))
    def start(self, shape: str) -> None:
        if self.kind == "sqlite":
            url = f"sqlite:///{self.tmp / 'logbook.db'}"
        else:
            url = self.databases.enter_context(
                postgres_database() if self.kind == "postgresql" else mariadb_database())
        self.flow = HandFlow(url, SHAPES[shape]())
        self._post(self.flow.start())
        self.now = utcnow()  # the sweep's clock during the rules: nothing queued since is "lost"

    def teardown(self) -> None:
        try:
            if hasattr(self, "flow"):
                self._drain_and_check()
        finally:
            if hasattr(self, "flow"):
                self.flow.backend.close()
            self.databases.close()
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- helpers -------------------------------------------------------------------------------
    def _post(self, dispatch: Dispatch | None) -> None:
        if dispatch is not None:
            self.bag += [Message(n, EXECUTE, dispatch.epoch) for n in dispatch.execute]
            self.bag += [Message(n, REVERT, dispatch.epoch) for n in dispatch.revert]

    def _rows(self) -> dict[str, AtomRow]:
        return self.flow.atoms()

    def _current(self, claim: Claim, rows: dict[str, AtomRow]) -> bool:
        row = rows[claim.name]
        return row.claim_token == claim.token and row.state in (states.RUNNING, states.REVERTING)

    def _deliver(self, message: Message) -> None:
        rows = self._rows()
        holding = [c for c in self.live if c.name == message.name and self._current(c, rows)]
        worker = next(self.workers)
        begun = steps.begin(self.flow.backend, self.flow.comp, self.flow.id, message.name, message.epoch,
                            message.mode, worker)
        if begun.verdict is steps.Verdict.RUN:
            # invariant 4: never a second claim while a live one is current
            assert not holding, f"{message} claimed while {holding} still holds {message.name}"
            assert begun.token is not None
            self.live.append(Claim(message.name, message.mode, message.epoch, worker, begun.token))
            if message.mode == EXECUTE:
                self.executed.add(message.name)
        elif begun.verdict is steps.Verdict.REFUSE:
            self._post(steps.refuse(self.flow.backend, self.flow.comp, self.flow.id, message.name, message.epoch,
                                    worker, message.mode))

    def _complete(self, claim: Claim, fail: bool) -> None:
        self._post(steps.finish(
            self.flow.backend, self.flow.comp, self.flow.id, claim.name, claim.epoch, claim.mode, claim.worker,
            result=None if fail else claim.name, failure=FAILURE if fail else None, token=claim.token,
        ))

    def _sweep(self, now: dt.datetime) -> None:
        outcome = reclaim.reclaim(self.flow.backend, self.flow.comp, self.flow.id, now=now,
                                  heartbeat_timeout=TIMEOUT, max_deliveries=5, owner="sweeper")
        self._post(outcome.dispatch)
        if outcome.start:
            self._post(reclaim.redrive(self.flow.backend, self.flow.comp, self.flow.id, "sweeper"))
        for poison in outcome.poison:
            self._post(steps.finish(self.flow.backend, self.flow.comp, self.flow.id, poison.name, outcome.epoch,
                                    poison.mode, poison.worker, failure=poison.failure(self.flow.id, 5)))

    # -- rules -----------------------------------------------------------------------------------
    @precondition(lambda self: self.bag)
    @rule(pick=st.integers(0, 99), duplicate=st.booleans())
    def deliver(self, pick: int, duplicate: bool) -> None:
        message = self.bag[pick % len(self.bag)]
        if not duplicate:
            self.bag.remove(message)
        self._deliver(message)

    @precondition(lambda self: self.bag)
    @rule(pick=st.integers(0, 99))
    def lose_a_message(self, pick: int) -> None:
        self.bag.pop(pick % len(self.bag))

    @precondition(lambda self: self.live)
    @rule(pick=st.integers(0, 99), fail=st.integers(0, 4))
    def complete(self, pick: int, fail: int) -> None:
        claim = self.live.pop(pick % len(self.live))
        self._complete(claim, fail=claim.mode == EXECUTE and fail == 0)

    @precondition(lambda self: self.live)
    @rule(pick=st.integers(0, 99))
    def kill_a_worker(self, pick: int) -> None:
        claim = self.live.pop(pick % len(self.live))
        self.dead.append(claim)
        old = utcnow() - dt.timedelta(days=1)
        self.flow.backend.run(lambda s: s.execute(
            update(AtomRow).where(AtomRow.flow_uuid == self.flow.id, AtomRow.name == claim.name,
                                  AtomRow.claim_token == claim.token).values(heartbeat_at=old)))

    @precondition(lambda self: self.dead)
    @rule(pick=st.integers(0, 99))
    def a_dead_worker_reports_late(self, pick: int) -> None:
        claim = self.dead.pop(pick % len(self.dead))
        rows = self._rows()
        current = self._current(claim, rows)
        before = rows[claim.name]
        self._complete(claim, fail=False)
        if not current:  # invariant 2: a superseded claim changes nothing
            after = self._rows()[claim.name]
            assert (after.state, after.result, after.claim_token) == (before.state, before.result,
                                                                        before.claim_token), claim

    @rule()
    def sweep(self) -> None:
        self._sweep(self.now)

    # resuming a REVERTED flow re-runs it from scratch (a new life, not this machine's subject)
    @precondition(lambda self: self.flow.state != states.REVERTED)
    @rule()
    def resume(self) -> None:
        self._post(control.start(self.flow.backend, self.flow.comp, self.flow.id, owner="caller",
                                 heartbeat_timeout=TIMEOUT))

    @rule()
    def request_revert(self) -> None:
        self._post(control.request_revert(self.flow.backend, self.flow.comp, self.flow.id, owner="caller"))

    # -- invariants --------------------------------------------------------------------------------
    @invariant()
    def every_transition_is_allowed(self) -> None:
        if not hasattr(self, "flow"):
            return
        rows = self.flow.backend.run(lambda s: s.execute(
            select(EventRow.kind, EventRow.atom_name, EventRow.old_state, EventRow.new_state)
            .where(EventRow.flow_uuid == self.flow.id, EventRow.kind.in_(("atom", "flow")))).all())
        for kind, atom, old, new in rows:
            if old is None or old == new:
                continue
            allowed = states.atom_transition_allowed if kind == "atom" else states.flow_transition_allowed
            assert allowed(old, new), f"{kind} {atom or ''} {old} -> {new}"

    # -- the end ---------------------------------------------------------------------------------------
    def _drain_and_check(self) -> None:
        """Workers stop failing: finish what runs, deliver what is queued, sweep; the flow must end."""
        for round_ in range(60):
            state = self.flow.state
            if state in states.FLOW_TERMINAL and not self.live and not self.bag:
                break
            while self.live:
                self._complete(self.live.pop(0), fail=False)
            while self.bag:
                self._deliver(self.bag.pop(0))
            if not self.live and not self.bag and self.flow.state not in states.FLOW_TERMINAL:
                # nobody is alive: everything in hand is orphaned, everything queued was lost
                self._sweep(utcnow() + dt.timedelta(seconds=(round_ + 1) * 20 * TIMEOUT))
        final = self.flow.state
        assert final in (states.SUCCESS, states.REVERTED), f"the flow is still {final}: {self.flow.atom_states()}"
        rows = self._rows()
        reverted = self.flow.transitions(states.REVERTED)
        if final == states.SUCCESS:
            assert {n: r.state for n, r in rows.items()} == dict.fromkeys(rows, states.SUCCESS)
        else:
            # invariant 3: every atom that may have run is compensated exactly once; nothing else is
            assert reverted == Counter(dict.fromkeys(self.executed, 1)), (reverted, self.executed)
            for name, row in rows.items():
                expected = states.REVERTED if name in self.executed else states.PENDING
                assert row.state == expected, (name, row.state)
        flow_row: FlowRow = self.flow.row()
        assert flow_row.outstanding == 0, flow_row.outstanding


@pytest.mark.parametrize(("kind", "examples"), [
    pytest.param("sqlite", 60, id="sqlite"),
    pytest.param("postgresql", 20, id="postgresql", marks=pytest.mark.services),
    pytest.param("mariadb", 20, id="mariadb", marks=pytest.mark.services),
])
def test_scheduler_invariants(kind: str, examples: int) -> None:
    run_state_machine_as_test(lambda: SchedulerMachine(kind), settings=settings(
        max_examples=examples, stateful_step_count=30, deadline=None, derandomize=True, database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    ))
