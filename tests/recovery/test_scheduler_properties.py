"""The scheduler's invariants under random interleavings (a Hypothesis state machine).

Several "workers" take messages from a bag in any order, duplicate them, lose them,
die as they start, mid-execute or mid-revert, report late after they were given up on;
the sweep runs at random, now and then past the heartbeat timeout (every message in the
bag is taken for lost, every claim in hand for dead: a slow worker then reports late);
the caller asks for a revert or a resume at random. Every step goes
through the real transactions (``steps.begin`` / ``finish`` / ``refuse``,
``reclaim.reclaim`` / ``redrive``, ``control.start`` / ``request_revert``) on a real
logbook. Retry controllers are played like any atom: their ``execute(history)`` is the
real controller's, run on the history its claim read, and their ``on_failure`` verdicts
are asked by ``steps.finish`` itself (``steps.ask``).

Shapes: ``linear``, ``fan``, ``diamond`` (no retry scope); ``retry_line``: pre ->
[``Times(2)`` r: x -> y] -> post (a failure in the scope: RETRY, then exhausted: REVERT of
just r's subflow, pre keeps its result); ``retry_fan``: an unordered flow of
[``ForEach([1, 2], revert_all=True)`` r: x, y] and a sibling z outside the scope (RETRY
while z runs, then exhausted: the whole flow is reverted). On the retry shapes failures are
planned per atom when the example starts (a scope member's first 0 to 2 executions that
count fail, any other atom's first 0 or 1), in the rules and in the drain alike, the first
messages may be run in order before the rules (a head start, so that faults land inside
the rounds too), and the caller acts on one roll in 16.

An atom's *rounds*: its life in the event log, cut at each reset to PENDING a retry
round makes ("retry of <controller>"); an atom outside every scope, and a controller
(it goes RETRYING, never back to PENDING), has one round. Checked after every step
and at the end (docs/architecture.md, the scheduler core's invariants):

1. every recorded transition is one the state tables allow;
2. a result is recorded only by the claim that is current (late reports of a
   superseded claim change nothing);
3. the event log has one claim for execute (-> RUNNING) of an atom per claim this
   machine was granted (so the rounds below count every claim), and:

   a. a round that a retry closed: if the atom was claimed for execute in it, it was
      reverted (-> REVERTED) exactly once in it, after its last claim; if it was never
      claimed in it, it was not reverted in it (a retried scope is reverted once per
      round it was claimed in, and may then run again);
   b. when the flow ends REVERTED, in each atom's last round: every atom claimed for
      execute is reverted exactly once, nothing that was not claimed is reverted (it is
      PENDING); the one exception: when only a retry scope was compensated (its
      controller exhausted with REVERT, and neither the caller nor a failure outside
      every scope asked for the whole flow), the atoms outside that scope's revert set
      (``retry_line``'s pre) keep their SUCCESS and are not reverted;
   c. when the flow ends SUCCESS (a retry shape possibly after retry rounds), every
      atom is SUCCESS;
4. nothing is claimed for revert while a live execute claim on it is current, and
   nothing is claimed again while a live claim on it is current (a claim the sweep took
   for dead, its heartbeat past the timeout, is no longer live);
5. once the workers stop failing, the flow always finishes (the sweep re-drives what
   was lost): no flow is silently quiet. It ends SUCCESS or REVERTED, or FAILURE when the
   sweep gave up on a revert whose workers kept dying (a poison message, ``max_deliveries``):
   then the atoms left REVERT_FAILURE are exactly such ones (3a still holds; 3b is not
   checked: the compensation stopped).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
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

from celeryflow import retry, states
from celeryflow.patterns import graph_flow, linear_flow, unordered_flow
from celeryflow.persistence.tables import AtomRow, EventRow, FlowRow, utcnow
from celeryflow.runtime import context, control, reclaim, retries, scopes, steps
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


def retry_line() -> Any:
    scope = linear_flow.Flow("scope", retry=retry.Times(2, name="r")).add(Step("x"), Step("y"))
    return linear_flow.Flow("retry_line").add(Step("pre"), scope, Step("post"))


def retry_fan() -> Any:
    scope = unordered_flow.Flow("scope", retry=retry.ForEach([1, 2], name="r", revert_all=True)).add(
        Step("x"), Step("y"))
    return unordered_flow.Flow("retry_fan").add(scope, Step("z"))


SHAPES = {"linear": linear, "fan": fan, "diamond": diamond, "retry_line": retry_line, "retry_fan": retry_fan}
PLAIN = ("diamond", "fan", "linear")
RETRY_SCOPES = ("retry_fan", "retry_line")
#: atoms that keep their SUCCESS when the flow ends REVERTED after only a retry scope was compensated
SURVIVORS = {"retry_line": frozenset({"pre"})}


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
    #: a retry controller's execute: the value its ``execute(history)`` provides (None: it raised)
    value: Any = None


@dataclass
class Round:
    """One round of an atom's life in the event log (see the module's docstring)."""

    claims: int = 0  # -> RUNNING
    reverted: int = 0  # -> REVERTED
    reverted_after_last_claim: bool = False


class SchedulerMachine(RuleBasedStateMachine):
    """One flow, a bag of messages, live and dead claims; the real transactions in between."""

    def __init__(self, kind: str = "sqlite", shapes: tuple[str, ...] = PLAIN, planned: bool = False) -> None:
        super().__init__()
        self.kind = kind
        self.shapes = shapes
        #: failures planned per atom at the start (retry shapes) instead of drawn at each report,
        #: and the caller resumes or asks for a revert on one roll in 16, not on every one: so that
        #: the failures inside a scope reach its retry rounds before the flow is cut short
        self.planned = planned
        self.patience = 16 if planned else 1
        self.tmp = Path(tempfile.mkdtemp(prefix="cf-props-"))
        self.databases = contextlib.ExitStack()
        self.bag: list[Message] = []
        self.live: list[Claim] = []
        self.dead: list[Claim] = []
        self.claims: Counter[str] = Counter()  # claims for execute granted: each may have run
        #: the whole flow was asked to be compensated (the caller, or a failure outside every scope)
        self.whole = False
        #: atoms whose revert the sweep gave up on (delivered max_deliveries times, never finished)
        self.poisoned: set[str] = set()
        self.workers = (f"w:{i}" for i in itertools.count(1))

    # -- set-up ----------------------------------------------------------------------------
    @initialize(data=st.data())
    def start(self, data: st.DataObject) -> None:
        shape = data.draw(st.sampled_from(self.shapes), label="shape")
        if self.kind == "sqlite":
            url = f"sqlite:///{self.tmp / 'logbook.db'}"
        else:
            url = self.databases.enter_context(
                postgres_database() if self.kind == "postgresql" else mariadb_database())
        self.shape = shape
        self.flow = HandFlow(url, SHAPES[shape]())
        # planned failures: an atom's first executions (that count) fail, in the rules and in the
        # drain alike; a scope's members 0 to 2 of them (up to exhausting its controller), the
        # other atoms (the controller too) seldom one: the retry rounds happen among the rules'
        # faults or after them
        members = {m for c in self.flow.comp.retries for m in scopes.members(self.flow.comp, c)}
        plan = {n: st.integers(0, 2) if n in members else st.sampled_from((0, 0, 0, 1))
                for n in sorted(self.flow.comp.atoms)}
        self.flaky: Counter[str] = Counter(data.draw(st.fixed_dictionaries(plan), label="flaky") if self.planned
                                           else {})
        self._post(self.flow.start())
        self.now = utcnow()  # the sweep's clock during the rules: nothing queued since is "lost"
        if self.planned:
            # a head start: the first messages are run in order by quick workers, so that the
            # rules' faults also land in the middle of a retry round, not only before the scope
            for _ in range(data.draw(st.integers(0, len(self.flow.comp.atoms) + 2), label="head")):
                if self.bag:
                    self._quick(self.bag.pop(0), fail=False)

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
            value = None
            if message.mode == EXECUTE:
                self.claims[message.name] += 1
                if self.flow.comp.atoms[message.name].kind == "retry":
                    value = self._provide(message.name, begun)
            self.live.append(Claim(message.name, message.mode, message.epoch, worker, begun.token, value))
        elif begun.verdict is steps.Verdict.REFUSE:
            self._post(steps.refuse(self.flow.backend, self.flow.comp, self.flow.id, message.name, message.epoch,
                                    worker, message.mode))

    def _provide(self, name: str, begun: steps.Begun) -> Any:
        """What the real controller's ``execute(history)`` provides, given the history its claim read."""
        controller = context.runtime_for(self.flow.backend, self.flow.id).atom(name)
        try:
            return retries.call_retry_execute(controller, begun.kwargs or {}, begun.history)
        except Exception:
            return None

    def _quick(self, message: Message, fail: bool) -> None:
        live = len(self.live)
        self._deliver(message)
        if len(self.live) > live:
            claim = self.live.pop()
            self._complete(claim, fail=claim.mode == EXECUTE and fail)

    def _complete(self, claim: Claim, fail: bool) -> None:
        retry_atom = claim.mode == EXECUTE and self.flow.comp.atoms[claim.name].kind == "retry"
        current = self._current(claim, self._rows())
        if claim.mode == EXECUTE and current and self.flaky[claim.name] > 0:
            self.flaky[claim.name] -= 1  # the first executions that count fail
            fail = True
        fail = fail or (retry_atom and claim.value is None)
        result = claim.value if retry_atom else claim.name
        self._post(steps.finish(
            self.flow.backend, self.flow.comp, self.flow.id, claim.name, claim.epoch, claim.mode, claim.worker,
            result=None if fail else result, failure=FAILURE if fail else None, token=claim.token,
        ))
        if fail and current:
            self._failed(claim.name)

    def _failed(self, name: str) -> None:
        """An execute failure was recorded: outside every retry scope, it compensates the whole flow."""
        if self.flow.comp.atoms[name].retry is None:
            self.whole = True

    def _sweep(self, now: dt.datetime) -> None:
        outcome = reclaim.reclaim(self.flow.backend, self.flow.comp, self.flow.id, now=now,
                                  heartbeat_timeout=TIMEOUT, max_deliveries=5, owner="sweeper")
        self._post(outcome.dispatch)
        if outcome.start:
            self._post(reclaim.redrive(self.flow.backend, self.flow.comp, self.flow.id, "sweeper"))
        for poison in outcome.poison:
            before = self._rows()[poison.name].state
            self._post(steps.finish(self.flow.backend, self.flow.comp, self.flow.id, poison.name, outcome.epoch,
                                    poison.mode, poison.worker, failure=poison.failure(self.flow.id, 5)))
            after = self._rows()[poison.name].state
            if poison.mode == EXECUTE and before == states.RUNNING and after == states.FAILURE:
                self._failed(poison.name)
            elif poison.mode == REVERT and before == states.REVERTING and after == states.REVERT_FAILURE:
                self.poisoned.add(poison.name)  # its compensation failed: the flow ends FAILURE

    # -- rules -----------------------------------------------------------------------------------
    @precondition(lambda self: self.bag)
    @rule(pick=st.integers(0, 99), duplicate=st.booleans())
    def deliver(self, pick: int, duplicate: bool) -> None:
        message = self.bag[pick % len(self.bag)]
        if not duplicate:
            self.bag.remove(message)
        self._deliver(message)

    @precondition(lambda self: self.bag)
    @rule(pick=st.integers(0, 99), fail=st.integers(0, 4))
    def a_quick_worker(self, pick: int, fail: int) -> None:
        """A message is taken, run and reported in one go (its worker neither dies nor is slow)."""
        self._quick(self.bag.pop(pick % len(self.bag)), fail=fail == 0 and not self.planned)

    @precondition(lambda self: self.bag)
    @rule(pick=st.integers(0, 99))
    def lose_a_message(self, pick: int) -> None:
        self.bag.pop(pick % len(self.bag))

    @precondition(lambda self: self.live)
    @rule(pick=st.integers(0, 99), fail=st.integers(0, 4))
    def complete(self, pick: int, fail: int) -> None:
        claim = self.live.pop(pick % len(self.live))
        self._complete(claim, fail=claim.mode == EXECUTE and fail == 0 and not self.planned)

    @precondition(lambda self: self.live)
    @rule(pick=st.integers(0, 99))
    def kill_a_worker(self, pick: int) -> None:
        self._kill(self.live.pop(pick % len(self.live)))

    @precondition(lambda self: self.bag)
    @rule(pick=st.integers(0, 99))
    def a_worker_dies_as_it_starts(self, pick: int) -> None:
        live = len(self.live)
        self._deliver(self.bag.pop(pick % len(self.bag)))
        if len(self.live) > live:
            self._kill(self.live.pop())

    def _kill(self, claim: Claim) -> None:
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

    @rule()
    def a_late_sweep(self) -> None:
        """The sweep runs past the heartbeat timeout: every message queued is taken for lost, and
        every claim in hand for dead (its worker was only slow: it reports late)."""
        self._sweep(utcnow() + dt.timedelta(seconds=2 * TIMEOUT))
        self.dead += self.live  # none of them is fresh any more: a new claim may supersede each
        self.live = []

    # resuming a REVERTED flow re-runs it from scratch (a new life, not this machine's subject)
    @precondition(lambda self: self.flow.state != states.REVERTED)
    @rule(roll=st.integers(1, 16))
    def resume(self, roll: int) -> None:
        if roll % self.patience:
            return
        self._post(control.start(self.flow.backend, self.flow.comp, self.flow.id, owner="caller",
                                 heartbeat_timeout=TIMEOUT))

    @rule(roll=st.integers(1, 16))
    def request_revert(self, roll: int) -> None:
        if roll % self.patience:
            return
        if self.flow.state not in (states.REVERTED, states.PENDING):
            self.whole = True
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

    def _rounds(self) -> dict[str, list[Round]]:
        """Each atom's rounds, from the event log (invariant 3: checked against the claims granted)."""
        events = self.flow.backend.run(lambda s: s.execute(
            select(EventRow.atom_name, EventRow.old_state, EventRow.new_state, EventRow.details)
            .where(EventRow.flow_uuid == self.flow.id, EventRow.kind == "atom").order_by(EventRow.id)).all())
        rounds: dict[str, list[Round]] = {name: [Round()] for name in self.flow.comp.atoms}
        resetting = None  # the controller whose round's reset events are being read
        for atom, old, new, details in events:
            if old == new or atom is None:
                continue
            reason = str((json.loads(details or "{}") or {}).get("reason", "")) if new == states.PENDING else ""
            if reason.startswith("retry of "):
                # one reset of a round writes an event per member that was not PENDING: together
                # they close the round of every member of the scope, PENDING ones included
                controller = reason.removeprefix("retry of ")
                scope = scopes.members(self.flow.comp, controller)
                assert atom in scope, f"{atom} reset by a retry of {controller}: it is not in its scope"
                if resetting != controller:
                    for member in scope:
                        rounds[member].append(Round())
                resetting = controller
                continue
            resetting = None
            now = rounds[atom][-1]
            if new == states.RUNNING:
                now.claims += 1
                now.reverted_after_last_claim = False
            elif new == states.REVERTED:
                now.reverted += 1
                now.reverted_after_last_claim = True
        claimed = Counter({name: sum(r.claims for r in rs) for name, rs in rounds.items() if any(r.claims for r in rs)})
        assert claimed == self.claims, f"claims in the event log {claimed} != claims granted {self.claims}"
        return rounds

    @invariant()
    def a_retried_scope_is_reverted_once_per_round_it_ran_in(self) -> None:
        if not hasattr(self, "flow"):
            return
        for name, rounds in self._rounds().items():
            for number, done in enumerate(rounds[:-1], 1):
                expected = 1 if done.claims else 0
                assert done.reverted == expected, (
                    f"{name}: round {number} of {len(rounds)} had {done.claims} claim(s) and was reverted "
                    f"{done.reverted} time(s) before the retry reset it")
                assert not done.claims or done.reverted_after_last_claim, f"{name}: claimed after its revert"

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
        rows = self._rows()
        if final == states.FAILURE and self.poisoned:
            # a compensation given up on (a poison message: its workers kept dying) fails the flow
            failed = {n for n, r in rows.items() if r.state == states.REVERT_FAILURE}
            assert failed and failed <= self.poisoned, (failed, self.poisoned)
            self.a_retried_scope_is_reverted_once_per_round_it_ran_in()
            return
        assert final in (states.SUCCESS, states.REVERTED), f"the flow is still {final}: {self.flow.atom_states()}"
        self.a_retried_scope_is_reverted_once_per_round_it_ran_in()
        last = {name: rounds[-1] for name, rounds in self._rounds().items()}
        if final == states.SUCCESS:
            assert {n: r.state for n, r in rows.items()} == dict.fromkeys(rows, states.SUCCESS)
        else:
            # invariant 3b: in its last round, every atom that may have run is compensated exactly
            # once, nothing else is; only the survivors of a scope-only compensation keep their result
            survivors = frozenset() if self.whole else SURVIVORS.get(self.shape, frozenset())
            inside = set().union(*(scopes.revert_set(self.flow.comp, c) for c in self.flow.comp.retries))
            assert not survivors & inside
            observed = {n: (r.state, last[n].claims > 0, last[n].reverted) for n, r in rows.items()}
            expected = {}
            for name, (_, claimed, _) in observed.items():
                if not claimed:
                    expected[name] = (states.PENDING, False, 0)
                elif name in survivors:
                    expected[name] = (states.SUCCESS, True, 0)
                else:
                    expected[name] = (states.REVERTED, True, 1)
            assert observed == expected, (self.shape, "whole" if self.whole else "scope", observed)
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


@pytest.mark.parametrize(("kind", "examples"), [
    pytest.param("sqlite", 30, id="sqlite"),
    pytest.param("postgresql", 10, id="postgresql", marks=pytest.mark.services),
    pytest.param("mariadb", 10, id="mariadb", marks=pytest.mark.services),
])
def test_scheduler_invariants_with_retry_scopes(kind: str, examples: int) -> None:
    """The same machine on flows with retry scopes: retry rounds interleaved with the faults."""
    run_state_machine_as_test(lambda: SchedulerMachine(kind, RETRY_SCOPES, planned=True), settings=settings(
        max_examples=examples, stateful_step_count=40, deadline=None, derandomize=True, database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    ))


class _Drawn:
    """Stands for Hypothesis's ``data`` in :meth:`SchedulerMachine.start`: the draws, by label."""

    def __init__(self, **drawn: Any) -> None:
        self.drawn = drawn

    def draw(self, strategy: Any, label: str) -> Any:
        return self.drawn[label]


@pytest.mark.parametrize("kind", [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.services),
    pytest.param("mariadb", id="mariadb", marks=pytest.mark.services),
])
def test_a_reclaimed_member_that_did_not_run_again_is_reverted_by_the_round(kind: str) -> None:
    """A case the random examples reach only seldom, played through the machine's own rules.

    ``retry_fan``: r ran; x's worker dies as it starts; the sweep reclaims x (PENDING, queued
    again at a new epoch); y fails: r decides RETRY; x's message is then refused (its scope is
    being reverted): x may have run, so the round reverts it before resetting it (3a). A
    scheduler whose round skipped such an atom fails here (checked: ``scope_rounds.advance``
    without ``fail_maybe_run``).
    """
    machine = SchedulerMachine(kind, RETRY_SCOPES, planned=True)
    try:
        machine.start(_Drawn(shape="retry_fan", flaky={"r": 0, "x": 0, "y": 1, "z": 0}, head=1))

        def pick(name: str) -> int:
            epoch = machine.flow.epoch
            return next(i for i, m in enumerate(machine.bag) if (m.name, m.mode, m.epoch) == (name, EXECUTE, epoch))

        machine.a_worker_dies_as_it_starts(pick("x"))
        machine.sweep()
        machine.a_quick_worker(pick("y"), fail=1)  # its planned failure
        assert machine.flow.atom_states()["r"] == states.RETRYING
        machine.a_quick_worker(pick("x"), fail=1)  # refused: x may have run, it is reverted
        machine.a_retried_scope_is_reverted_once_per_round_it_ran_in()
        machine._drain_and_check()  # the round ends, r and its scope run again
        assert machine.flow.state == states.SUCCESS
        assert [(r.claims, r.reverted) for r in machine._rounds()["x"]] == [(1, 1), (1, 0)]
    finally:
        machine.teardown()
