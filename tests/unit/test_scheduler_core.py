"""The scheduler core's rules as tables: (snapshot, event) -> decision, with no database.

Each row is one transition of the state machines, or one defect of issue #8 whose rule
now lives in :mod:`celeryflow.scheduler` (the runtime transactions apply these
decisions; the database suites check that they do).
"""

from __future__ import annotations

import ast
import datetime as dt
import pathlib
from typing import Any

import pytest

from celeryflow import states
from celeryflow.compiler import compile as compile_flow
from celeryflow.exceptions import InvalidState
from celeryflow.patterns import graph_flow, linear_flow
from celeryflow.scheduler import admission, claim, compensation, deciders, liveness, recovery, retry_scopes, settle
from celeryflow.scheduler.snapshot import AtomSnap, FlowSnap
from celeryflow.task import FunctorTask

CORE = pathlib.Path(claim.__file__).parent
#: what the core may import: the standard library's pure parts and celeryflow's pure modules
ALLOWED = {"__future__", "collections", "dataclasses", "datetime", "enum", "typing", "celeryflow"}
ALLOWED_CELERYFLOW = ("celeryflow.scheduler", "celeryflow.states", "celeryflow.exceptions",
                      "celeryflow.compilation")


def test_the_core_does_no_io() -> None:
    """No SQLAlchemy, no Celery, no clock, no logging: only pure modules are imported."""
    for path in sorted(CORE.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module == "celeryflow":
                names = [f"celeryflow.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] in ALLOWED, f"{path.name} imports {name}"
                if name.startswith("celeryflow"):
                    assert name.startswith(ALLOWED_CELERYFLOW), f"{path.name} imports {name}"
            if isinstance(node, ast.Attribute) and node.attr in ("now", "utcnow", "time"):
                raise AssertionError(f"{path.name} reads a clock ({ast.unparse(node)})")


def flow(state: str = states.RUNNING, epoch: int = 3, **kw: Any) -> FlowSnap:
    return FlowSnap("f", "flow", state, epoch, **kw)


def atom(name: str = "a", state: str = states.PENDING, intention: str = states.EXECUTE, **kw: Any) -> AtomSnap:
    return AtomSnap(name, state, intention, **kw)


# --------------------------------------------------------------------------- claim


@pytest.mark.parametrize(
    ("snap", "epoch", "mode", "blocked", "verdict", "new"),
    [
        (None, 3, claim.EXECUTE, False, claim.Verdict.SKIP, ""),  # flow gone
        (flow(epoch=4), 3, claim.EXECUTE, False, claim.Verdict.SKIP, ""),  # fenced off: older epoch
        (flow(epoch=2), 3, claim.REVERT, False, claim.Verdict.SKIP, ""),  # fenced off whatever it asks
        (flow(), 3, claim.EXECUTE, False, claim.Verdict.RUN, states.RUNNING),
        (flow(), 3, claim.EXECUTE, True, claim.Verdict.REFUSE, ""),  # its scope is being retried
        (flow(states.SUSPENDING), 3, claim.EXECUTE, False, claim.Verdict.REFUSE, ""),
        (flow(states.REVERTING), 3, claim.EXECUTE, False, claim.Verdict.REFUSE, ""),  # failing: nothing starts
        (flow(states.SUCCESS), 3, claim.EXECUTE, False, claim.Verdict.REFUSE, ""),
        (flow(states.REVERTING), 3, claim.REVERT, False, claim.Verdict.RUN, states.REVERTING),
        (flow(states.RUNNING), 3, claim.REVERT, False, claim.Verdict.RUN, states.REVERTING),  # a retry round
        (flow(states.SUSPENDED), 3, claim.REVERT, False, claim.Verdict.REFUSE, ""),
    ],
)
def test_claim(snap: FlowSnap | None, epoch: int, mode: str, blocked: bool, verdict: claim.Verdict,
               new: str) -> None:
    decided = claim.decide(snap, epoch, mode, blocked)
    assert decided.verdict is verdict and decided.new == new
    if verdict is claim.Verdict.RUN:
        for old in decided.olds:  # every claim it may make is a transition the tables allow
            states.check_atom_transition(old, decided.new, "a")
    else:
        assert decided.reason and not decided.olds


def test_a_retry_controller_is_claimed_again_from_retrying() -> None:
    assert states.RETRYING in claim.decide(flow(), 3, claim.EXECUTE, False).olds


def test_reverts_claim_every_atom_that_executed() -> None:
    assert set(claim.decide(flow(states.REVERTING), 3, claim.REVERT, False).olds) == set(compensation.EXECUTED)


@pytest.mark.parametrize(
    ("snap", "kind", "plain"),
    [
        (flow(), "task", True),
        (flow(), "retry", False),  # retry controllers: the general path
        (flow(scope_retrying=True), "task", False),
        (flow(epoch=4), "task", False),
        (flow(states.REVERTING), "task", False),
    ],
)
def test_the_fast_paths_case(snap: FlowSnap, kind: str, plain: bool) -> None:
    assert claim.is_plain(snap.state, snap.epoch, snap.scope_retrying, 3, kind) is plain


# --------------------------------------------------------------------------- admission (dispatch window)

READY = atom("b")


@pytest.mark.parametrize(
    ("joins", "outstanding", "held", "window", "expected"),
    [
        ({"b": READY, "c": READY}, 1, 0, 512, (("b", "c"), 0)),  # room for both
        ({"b": READY, "c": READY}, 2, 0, 2, (("b",), 1)),  # one slot left: c is held
        ({"b": READY, "c": READY}, 3, 4, 2, ((), 6)),  # the window is full: both held on top
        ({"b": atom(waiting=1), "c": READY}, 1, 0, 512, (("c",), 0)),  # b waits on another branch
        ({"b": atom(queued=True), "c": READY}, 1, 0, 512, (("c",), 0)),  # b already queued
        ({"b": atom(state=states.IGNORE), "c": READY}, 1, 0, 512, (("c",), 0)),  # decided away
        ({"b": atom(intention=states.REVERT), "c": READY}, 1, 0, 512, (("c",), 0)),  # failing flow
        ({"c": READY}, 1, 0, 512, (("c",), 0)),  # b's row was not returned (not counted in)
    ],
)
def test_admit_successors(joins: dict[str, AtomSnap], outstanding: int, held: int, window: int,
                          expected: tuple[tuple[str, ...], int]) -> None:
    admitted = admission.admit_successors(["b", "c"], joins, outstanding, held, window)
    assert (admitted.queue, admitted.held) == expected


def test_the_window_limits_every_wave_not_only_the_first() -> None:
    """#8 defect 6: linear(a, unordered(20)) with a window of 4 queued 20 atoms when a finished."""
    twenty = [f"u{i}" for i in range(20)]
    admitted = admission.admit_successors(twenty, {n: READY for n in twenty}, outstanding=1, held=0, window=4)
    assert len(admitted.queue) == 4 and admitted.held == 16
    # held ones are refilled once the in-flight count falls to half the window, up to the window
    assert not admission.finish_needs_general_path(16, 4, 4)  # 3 left in flight: not yet
    assert admission.finish_needs_general_path(16, 3, 4)  # 2 left: the general path refills
    assert admission.refill_due(16, 2, 4, states.RUNNING) == 2


@pytest.mark.parametrize(
    ("held", "outstanding", "window", "state", "want"),
    [
        (0, 0, 8, states.RUNNING, 0),  # nothing held
        (10, 5, 8, states.RUNNING, 0),  # above half the window: not yet
        (10, 4, 8, states.RUNNING, 4),  # at half: fill the window
        (2, 0, 8, states.RUNNING, 2),  # fewer held than room
        (10, 4, 8, states.REVERTING, 4),  # held reverts
        (10, 0, 8, states.SUSPENDING, 0),  # a suspending flow starts nothing
    ],
)
def test_refill_due(held: int, outstanding: int, window: int, state: str, want: int) -> None:
    assert admission.refill_due(held, outstanding, window, state) == want


def test_a_short_refill_forgets_the_rest() -> None:
    assert admission.held_after_refill(10, 4, 4) == 6
    assert admission.held_after_refill(10, 4, 1) == 0  # a scope or a reset took the others


# --------------------------------------------------------------------------- settle


@pytest.mark.parametrize(
    ("state", "outstanding", "dispatched", "kw", "expected"),
    [
        (states.RUNNING, 1, False, {}, settle.Next.NOTHING),  # work in flight
        (states.RUNNING, 0, True, {}, settle.Next.NOTHING),  # just dispatched
        (states.RUNNING, 0, False, {"unfinished": 0}, settle.Next.SUCCEED),
        (states.RUNNING, 0, False, {"unfinished": 2}, settle.Next.QUIET),  # the sweep looks at it
        (states.SUSPENDING, 0, False, {}, settle.Next.SUSPEND),
        (states.SUSPENDING, 2, False, {}, settle.Next.NOTHING),  # running ones finish first
        (states.REVERTING, 0, False, {}, settle.Next.PLAN_REVERT),  # nothing runs any more: plan now
        (states.REVERTING, 1, False, {}, settle.Next.NOTHING),  # #8 defect 4: wait for running atoms
        (states.REVERTING, 0, False, {"revert_planned": True}, settle.Next.END_REVERTED),
        (states.REVERTING, 0, False, {"revert_planned": True, "revert_failed": True}, settle.Next.END_FAILED),
        (states.SUCCESS, 0, False, {}, settle.Next.NOTHING),
        (states.SUSPENDED, 0, False, {}, settle.Next.NOTHING),
    ],
)
def test_settle(state: str, outstanding: int, dispatched: bool, kw: dict[str, Any], expected: settle.Next) -> None:
    decided = settle.decide(state, outstanding, dispatched, **kw)
    assert decided is expected
    if decided in settle.TARGET:
        states.check_flow_transition(state, settle.TARGET[decided], "f")


def test_a_quiet_running_flow_needs_its_unfinished_count() -> None:
    assert settle.needs_unfinished_count(states.RUNNING, 0, False)
    assert not settle.needs_unfinished_count(states.RUNNING, 1, False)
    assert not settle.needs_unfinished_count(states.REVERTING, 0, False)
    with pytest.raises(ValueError, match="count them"):
        settle.decide(states.RUNNING, 0, False)


@pytest.mark.parametrize(
    ("ready", "failed", "expected"),
    [(2, False, settle.Next.NOTHING), (0, False, settle.Next.END_REVERTED), (0, True, settle.Next.END_FAILED)],
)
def test_a_compensation_with_nothing_to_revert_ends_at_once(ready: int, failed: bool, expected: settle.Next) -> None:
    assert settle.after_plan(ready, failed) is expected


# --------------------------------------------------------------------------- liveness and the sweep

NOW = dt.datetime(2026, 12, 3, 12, 0, 0)
OLD = NOW - dt.timedelta(seconds=120)
FRESH = NOW - dt.timedelta(seconds=5)


@pytest.mark.parametrize(
    ("beat", "fresh"), [(None, False), (OLD, False), (FRESH, True), (NOW - dt.timedelta(seconds=60), False)]
)
def test_claim_is_fresh(beat: dt.datetime | None, fresh: bool) -> None:
    assert liveness.claim_is_fresh(beat, 60.0, NOW) is fresh


@pytest.mark.parametrize(
    ("atoms", "progress_at", "stale_atoms", "case"),
    [
        ([atom(state=states.RUNNING, heartbeat_at=FRESH)], OLD, True, liveness.Case.HEALTHY),
        ([atom(state=states.RUNNING, heartbeat_at=OLD)], OLD, True, liveness.Case.ORPHANED),
        ([atom(state=states.REVERTING, intention=states.REVERT, heartbeat_at=None)], FRESH, True,
         liveness.Case.ORPHANED),  # a claim that never heartbeat
        # right after a logbook outage every heartbeat is old: #8 defect 9, nothing is reclaimed
        ([atom(state=states.RUNNING, heartbeat_at=OLD)], OLD, False, liveness.Case.HEALTHY),
        # a queued message older than the resend wait, and no progress: lost
        ([atom(queued=True, queued_at=OLD)], OLD, True, liveness.Case.LOST),
        ([atom(queued=True, queued_at=OLD)], FRESH, True, liveness.Case.HEALTHY),  # the flow progresses
        ([atom(queued=True, queued_at=FRESH)], OLD, True, liveness.Case.HEALTHY),  # a backlog, not a loss
        # a queued REVERTING atom waits for its message: not in hand, not stale
        ([atom(state=states.REVERTING, intention=states.REVERT, queued=True, queued_at=FRESH)], OLD, True,
         liveness.Case.HEALTHY),
        ([atom(state=states.SUCCESS)], OLD, True, liveness.Case.STUCK),  # nothing in flight, no progress
        ([atom(state=states.SUCCESS)], FRESH, True, liveness.Case.HEALTHY),
    ],
)
def test_sweep_case(atoms: list[AtomSnap], progress_at: dt.datetime, stale_atoms: bool, case: liveness.Case) -> None:
    found = liveness.sweep_case(atoms, progress_at, NOW, 60.0, liveness.resend_wait(60.0, 0), stale_atoms=stale_atoms)
    assert found.case is case


def test_resends_back_off() -> None:
    assert [liveness.resend_wait(10.0, n) for n in range(6)] == [10.0, 20.0, 40.0, 80.0, 80.0, 80.0]
    assert liveness.resend_wait(10.0, 0, countdown=5.0) == 15.0  # a delayed retry is not late


def test_only_stale_claims_are_reclaimed_beside_live_ones() -> None:
    found = liveness.sweep_case(
        [atom("a", states.RUNNING, heartbeat_at=OLD), atom("b", states.RUNNING, heartbeat_at=FRESH)],
        OLD, NOW, 60.0, 60.0)
    assert (found.stale, found.running) == (("a",), ("b",))


# --------------------------------------------------------------------------- recovery: lost claims, start, revert


@pytest.mark.parametrize(
    ("state", "compensating", "kw", "outcome", "new"),
    [
        (states.RUNNING, False, {}, recovery.Lost.RERUN, states.PENDING),  # at-least-once
        # #8 defect 3: an execution that may have had effects, in a compensating flow, is reverted
        (states.RUNNING, True, {}, recovery.Lost.FAIL, states.FAILURE),
        (states.REVERTING, True, {}, recovery.Lost.REVERT_AGAIN, states.REVERTING),
        (states.RUNNING, False, {"deaths": 5, "max_deliveries": 5}, recovery.Lost.POISON, states.RUNNING),
        (states.REVERTING, True, {"deaths": 5, "max_deliveries": 5}, recovery.Lost.POISON, states.REVERTING),
        (states.RUNNING, False, {"deaths": 4, "max_deliveries": 5}, recovery.Lost.RERUN, states.PENDING),
        # no worker recorded: nobody to blame, run it again
        (states.RUNNING, False, {"deaths": 5, "max_deliveries": 5, "has_worker": False}, recovery.Lost.RERUN,
         states.PENDING),
    ],
)
def test_lost_claim(state: str, compensating: bool, kw: dict[str, Any], outcome: recovery.Lost, new: str) -> None:
    fate = recovery.lost_claim(state, compensating, **kw)
    assert (fate.outcome, fate.state) == (outcome, new)
    if new != state:
        states.check_atom_transition(state, new, "a")


def test_only_claims_can_be_lost() -> None:
    with pytest.raises(ValueError, match="only claims"):
        recovery.lost_claim(states.SUCCESS, False)


@pytest.mark.parametrize(
    ("state", "epoch", "outstanding", "action"),
    [
        (states.PENDING, 0, 0, recovery.Start.FIRST),
        (states.PENDING, 1, 0, recovery.Start.REDRIVE),  # started before: read the atoms back
        (states.SUCCESS, 2, 0, recovery.Start.NOTHING),
        (states.FAILURE, 2, 0, recovery.Start.NOTHING),
        (states.REVERTED, 2, 0, recovery.Start.FROM_SCRATCH),
        (states.RUNNING, 2, 3, recovery.Start.REDRIVE),  # #8 defect 5: only stale claims are re-run
        (states.SUSPENDED, 2, 0, recovery.Start.REDRIVE),
        (states.REVERTING, 2, 1, recovery.Start.REDRIVE),
    ],
)
def test_start_action(state: str, epoch: int, outstanding: int, action: recovery.Start) -> None:
    assert recovery.start_action(state, epoch, outstanding) is action


@pytest.mark.parametrize("state", [states.REVERTED, states.PENDING])
def test_a_revert_request_with_nothing_to_do(state: str) -> None:
    assert recovery.revert_requested(state, "f") is False


@pytest.mark.parametrize("state", recovery.REVERTIBLE)
def test_a_revert_request_goes_reverting(state: str) -> None:
    assert recovery.revert_requested(state, "f") is True
    if state != states.REVERTING:
        states.check_flow_transition(state, states.REVERTING, "f")


def test_a_revert_request_refuses_other_states() -> None:
    with pytest.raises(InvalidState, match="cannot be reverted now"):
        recovery.revert_requested(states.RESUMING, "f")


def test_a_revert_request_retries_failed_reverts_only() -> None:
    assert recovery.on_revert_request(states.REVERT_FAILURE) == states.REVERTING
    states.check_atom_transition(states.REVERT_FAILURE, states.REVERTING, "a")
    for state in (states.SUCCESS, states.RUNNING, states.PENDING, states.REVERTED):
        assert recovery.on_revert_request(state) is None


# --------------------------------------------------------------------------- compensation


def _task(name: str) -> FunctorTask:
    return FunctorTask(lambda: None, name=name)


def diamond() -> Any:
    a, b, c, d = _task("a"), _task("b"), _task("c"), _task("d")
    return compile_flow(graph_flow.Flow("g").add(a, b, c, d).link(a, b).link(a, c).link(b, d).link(c, d))


def test_revert_plan_orders_by_reverse_dependencies() -> None:
    comp = diamond()
    plan = compensation.revert_plan(comp, {"a", "b", "c", "d"})
    assert plan == {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}
    counts = compensation.waiting_counts(plan, plan)
    assert counts == {"a": 2, "b": 1, "c": 1, "d": 0}
    assert compensation.first_wave(counts, dict.fromkeys(plan, states.SUCCESS), comp) == ["d"]


def test_revert_plan_walks_through_atoms_that_did_not_run() -> None:
    comp = compile_flow(linear_flow.Flow("l").add(_task("a"), _task("b"), _task("c")))
    assert compensation.revert_plan(comp, {"a", "c"}) == {"a": [], "c": ["a"]}


def test_retried_reverts_go_first_then_the_latest_atoms() -> None:
    comp = compile_flow(graph_flow.Flow("g").add(_task("a"), _task("b"), _task("c")))
    counts = {"a": 0, "b": 0, "c": 0}
    by_state = {"a": states.REVERTING, "b": states.SUCCESS, "c": states.SUCCESS}
    assert compensation.first_wave(counts, by_state, comp) == ["a", "c", "b"]


def test_nothing_under_a_failed_revert_is_reverted() -> None:
    plan = {"a": [], "b": ["a"], "c": ["b"], "x": []}
    assert compensation.under_failed_reverts(plan, ["c"]) == {"a", "b"}
    assert compensation.under_failed_reverts(plan, ["x"]) == set()


@pytest.mark.parametrize(
    ("snap", "maybe"),
    [
        (atom(started_at=NOW), True),  # reclaimed or resumed: it may have had effects (#8 defect 3)
        (atom(), False),  # never claimed
        (atom(started_at=NOW, queued=True), False),  # queued again: it will run, not be given up on
        (atom(state=states.SUCCESS, started_at=NOW), False),  # executed: reverted anyway
    ],
)
def test_may_have_run(snap: AtomSnap, maybe: bool) -> None:
    assert compensation.may_have_run(snap) is maybe


@pytest.mark.parametrize(
    ("snap", "now"),
    [
        (atom(state=states.SUCCESS, intention=states.REVERT), True),
        (atom(state=states.FAILURE, intention=states.REVERT), True),  # the failed atom itself
        (atom(state=states.SUCCESS, intention=states.REVERT, rwaiting=1), False),  # its successor first
        (atom(state=states.SUCCESS, intention=states.REVERT, queued=True), False),  # already queued
        (atom(state=states.PENDING, intention=states.REVERT), False),  # never ran: not reverted
    ],
)
def test_revertible_now(snap: AtomSnap, now: bool) -> None:
    assert compensation.revertible_now(snap) is now


# --------------------------------------------------------------------------- retry scopes


def v(decision: str, countdown: float = 0.0, problem: dict[str, Any] | None = None) -> retry_scopes.ScopeVerdict:
    return retry_scopes.ScopeVerdict(decision, countdown, problem)


RETRY, REVERT, REVERT_ALL = retry_scopes.RETRY, retry_scopes.REVERT, retry_scopes.REVERT_ALL


@pytest.mark.parametrize(
    ("chain", "verdicts", "defer", "expected"),
    [
        ((), {}, False, retry_scopes.Resolution(REVERT_ALL)),  # no controller: the whole flow
        (("inner",), {}, False, retry_scopes.Ask("inner", "x")),  # asks before it decides
        (("inner",), {"inner": v(RETRY, 2.0)}, False, retry_scopes.Resolution(RETRY, "inner", 2.0)),
        (("inner",), {"inner": v(REVERT)}, False, retry_scopes.Resolution(REVERT, "inner")),  # just its subflow
        (("inner",), {"inner": v(REVERT)}, True, retry_scopes.Resolution(REVERT_ALL)),  # deferred: no parent
        (("inner",), {"inner": v(REVERT_ALL)}, False, retry_scopes.Resolution(REVERT_ALL)),
        # a controller that could not decide reverts everything, blaming itself
        (("inner",), {"inner": v(RETRY, problem={"exc": "boom"})}, False,
         retry_scopes.Resolution(REVERT_ALL, failures={"inner": {"exc": "boom"}})),
        # REVERT asks the parent next, on the failure of the inner controller
        (("inner", "outer"), {"inner": v(REVERT)}, False, retry_scopes.Ask("outer", "inner")),
        (("inner", "outer"), {"inner": v(REVERT), "outer": v(RETRY)}, False,
         retry_scopes.Resolution(RETRY, "outer")),  # the parent's retry wins
        (("inner", "outer"), {"inner": v(REVERT), "outer": v(REVERT_ALL)}, False,
         retry_scopes.Resolution(REVERT_ALL)),
        (("inner", "outer"), {"inner": v(REVERT), "outer": v(REVERT)}, False,
         retry_scopes.Resolution(REVERT, "inner")),  # both say REVERT: only the inner subflow
        (("inner", "outer"), {"inner": v(REVERT), "outer": v(REVERT)}, True,
         retry_scopes.Resolution(REVERT_ALL)),  # defer_reverts: further out, up to the flow
        (("inner", "outer"), {"inner": v(RETRY)}, False, retry_scopes.Resolution(RETRY, "inner")),  # never asks outer
    ],
)
def test_retry_scope_resolution(chain: tuple[str, ...], verdicts: dict[str, retry_scopes.ScopeVerdict],
                                defer: bool, expected: Any) -> None:
    assert retry_scopes.resolve("x", chain, verdicts, defer) == expected


# --------------------------------------------------------------------------- deciders


def decided_flow(depth: str) -> Any:
    a, x, y = _task("a"), _task("x"), _task("y")
    return compile_flow(graph_flow.Flow("g").add(a, x, y).link(a, x, decider=lambda history: False,
                                                              decider_depth=depth).link(x, y))


@pytest.mark.parametrize(
    ("depth", "verdicts", "ignored", "failed"),
    [
        ("ALL", [True], set(), False),  # the link is taken
        ("ATOM", [False], {"x"}, False),  # just the atom (#8 defect 2: y then runs, not hangs)
        ("ALL", [False], {"x", "y"}, False),  # everything after it
        ("ALL", [{"exc_type_names": ["RuntimeError"]}], set(), True),  # the decider raised: the flow fails
    ],
)
def test_deciders(depth: str, verdicts: list[Any], ignored: set[str], failed: bool) -> None:
    decided = deciders.decide(decided_flow(depth), "x", verdicts)
    assert set(decided.ignored) == ignored and (decided.failure is not None) is failed


@pytest.mark.parametrize(
    ("members", "plan", "lost", "busy"),
    [
        ({"a": atom(state=states.SUCCESS)}, {}, frozenset(), False),  # quiet: plan the round's reverts
        ({"a": atom(queued=True)}, {}, frozenset(), True),  # a message is out
        ({"a": atom(state=states.RUNNING)}, {}, frozenset(), True),  # running elsewhere: wait
        ({"a": atom(state=states.RUNNING)}, {}, frozenset({"a"}), False),  # its worker is lost
        ({"a": atom(state=states.RUNNING)}, {}, None, False),  # resume: every claim was fenced off
        # a planned revert the window holds: waiting, not quiet
        ({"a": atom(state=states.SUCCESS, intention=states.REVERT)}, {"a": []}, frozenset(), True),
        ({"a": atom(state=states.SUCCESS, intention=states.REVERT, rwaiting=1)}, {"a": []}, frozenset(), False),
        ({"a": atom(state=states.REVERTED, intention=states.REVERT)}, {"a": []}, frozenset(), False),
    ],
)
def test_a_retry_round_waits_while_busy(members: dict[str, AtomSnap], plan: dict[str, Any],
                                        lost: frozenset[str] | None, busy: bool) -> None:
    assert retry_scopes.round_busy(members, plan, lost) is busy


@pytest.mark.parametrize(
    ("fate", "intention", "flow_state", "again"),
    [
        (recovery.Lost.RERUN, states.EXECUTE, states.RUNNING, "execute"),  # ready again at once
        (recovery.Lost.RERUN, states.EXECUTE, states.SUSPENDING, None),  # a suspending flow starts nothing
        (recovery.Lost.RERUN, states.REVERT, states.RUNNING, None),  # its scope reverts it instead
        (recovery.Lost.REVERT_AGAIN, states.REVERT, states.REVERTING, "revert"),
        (recovery.Lost.REVERT_AGAIN, states.REVERT, states.RUNNING, "revert"),  # a retry round
        (recovery.Lost.REVERT_AGAIN, states.REVERT, states.SUSPENDING, None),
        (recovery.Lost.FAIL, states.EXECUTE, states.REVERTING, None),  # waits for the compensation plan
        (recovery.Lost.POISON, states.EXECUTE, states.RUNNING, None),  # failed by the caller
    ],
)
def test_what_a_reclaim_queues_again(fate: recovery.Lost, intention: str, flow_state: str, again: str | None) -> None:
    assert recovery.requeue_after_loss(fate, intention, flow_state) == again
