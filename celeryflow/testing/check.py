"""The compensation check: run a flow once per failure point and verify what was undone.

:func:`compensation_problems` checks one failed run against celeryflow's promise: every
atom that executed is reverted exactly once, in reverse dependency order (nothing is
reverted while an atom that depends on it is still in place), and nothing else is.

Those invariants are the engine's; a revert that runs but *forgets to undo* satisfies
them. Give :func:`for_each_failure_point` an ``observe`` callable that returns what your
flow changes in the world (rows, files, a fake service's state): after each compensated
run the world must look as it did before that run, and the report names the failure
points where it does not.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from celeryflow import states
from celeryflow.exceptions import CeleryflowError
from celeryflow.testing.inject import AFTER, BEFORE, Fault
from celeryflow.testing.outcome import Outcome

if TYPE_CHECKING:
    from celeryflow.testing.runner import FlowRunner, FlowSource


def compensation_problems(outcome: Outcome) -> list[str]:
    """What is wrong with the compensation ``outcome`` shows (empty: nothing), from its event log."""
    comp = outcome.comp
    assert comp is not None, "an Outcome read from the logbook (read_outcome) carries its compilation"
    tasks = {name for name, atom in comp.atoms.items() if atom.kind == "task"}
    live: Counter[str] = Counter()  # executions not undone yet
    problems: list[str] = []
    for step in outcome.events:
        name = step.atom
        if name not in tasks:
            continue  # retry controllers: their own revert is bookkeeping
        if step.execute_ended:
            live[name] += 1
        elif step.revert_started:
            if live[name] <= 0:
                problems.append(f"{name} was reverted but had not executed")
            after = comp.descendants(name)
            early = [d for d in comp.order if d in tasks and live[d] > 0 and d in after]
            if early:
                problems.append(f"{name} was reverted before {', '.join(early)}, which depend(s) on it, "
                                "were reverted")
        elif step.revert_ended and step.new == states.REVERTED:
            live[name] -= 1
    if outcome.state == states.FAILURE and outcome.revert_failures:
        failed = "; ".join(f"{n}: {f.exception_str}" for n, f in outcome.revert_failures.items())
        problems.append(f"the compensation failed (flow FAILURE): revert of {failed}")
    elif outcome.state != states.REVERTED:
        problems.append(f"the flow ended {outcome.state}, not REVERTED")
    never = [n for n in comp.order if live[n] > 0]
    if never and outcome.state in (states.REVERTED, states.FAILURE) and not outcome.revert_failures:
        problems.append(f"executed but never reverted: {', '.join(never)}")
    return problems


def describe_change(before: Any, after: Any) -> str:
    """How ``after`` differs from ``before`` (per key for mappings)."""
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        parts = [f"{k!r} left behind ({after[k]!r})" for k in after if k not in before]
        parts += [f"{k!r} gone (was {before[k]!r})" for k in before if k not in after]
        parts += [f"{k!r} is {after[k]!r}, was {before[k]!r}" for k in before if k in after and before[k] != after[k]]
        return "; ".join(parts)
    return f"{after!r}, was {before!r}"


@dataclass
class PointResult:
    """One failure point: the injected fault, the run's outcome and what was wrong (empty: nothing)."""

    fault: Fault | None
    outcome: Outcome
    problems: list[str] = field(default_factory=list)

    @property
    def point(self) -> str:
        return self.fault.describe() if self.fault is not None else "no injected fault (the flow fails by itself)"


class CompensationBroken(CeleryflowError, AssertionError):
    """Some failure point was not compensated as it should be; ``.report`` has every point's result."""

    def __init__(self, message: str, report: FailurePoints) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class FailurePoints:
    """What :func:`for_each_failure_point` found.

    Attributes:
        baseline: the run without injected faults (it tells which atoms run at all).
        results: one per failure point, in execution order.
    """

    baseline: Outcome
    results: list[PointResult]

    @property
    def broken(self) -> list[PointResult]:
        """The failure points with problems."""
        return [r for r in self.results if r.problems]

    @property
    def points(self) -> list[str]:
        return [r.point for r in self.results]

    def report(self) -> str:
        broken = self.broken
        lines = [f"compensation checked at {len(self.results)} failure point(s): "
                 + (f"{len(broken)} broken" if broken else "all compensated")]
        for result in broken:
            lines.append(f"- {result.point} (flow {result.outcome.flow_uuid}, {result.outcome.state}):")
            lines += [f"    {problem}" for problem in result.problems]
            lines.append("    order: " + ", ".join(f"{what} {atom}" for what, atom in result.outcome.order))
        return "\n".join(lines)

    def raise_for_problems(self) -> None:
        if self.broken:
            raise CompensationBroken(self.report(), self)


def for_each_failure_point(
    flow: FlowSource,
    store: Mapping[str, Any] | None = None,
    *,
    runner: FlowRunner | None = None,
    where: Iterable[str] = (BEFORE, AFTER),
    observe: Callable[[], Any] | None = None,
    reset: Callable[[], None] | None = None,
    check: Callable[[Outcome], None] | None = None,
    raise_on_problems: bool = True,
    **options: Any,
) -> FailurePoints:
    """Run ``flow`` once per atom failing (before and after its execute) and check each compensation.

    The baseline run (no fault) tells which atoms execute; each of them is then made to
    fail at each of ``where``, one run per point. A run is broken when
    :func:`compensation_problems` finds something, when ``observe()`` after it differs from
    ``observe()`` before it (a revert did not undo its execute), or when ``check(outcome)``
    raises AssertionError.

    Args:
        flow: the flow, or a callable building it (preferred: every run gets fresh atoms).
        store: the store of every run.
        runner: where to run (default: the embedded default on a temporary SQLite logbook).
        where: ``"before"`` and/or ``"after"``.
        observe: returns a comparable picture of what the flow changes in the world.
        reset: puts the world back as it was before any run; called before every run (the
            baseline's effects would otherwise be there when the next run starts).
        check: more assertions of your own on each failed run's outcome.
        raise_on_problems: raise :class:`CompensationBroken` (naming the failure points) if any.

    Returns:
        The :class:`FailurePoints` found (when nothing is broken, or ``raise_on_problems`` is False).
    """
    if runner is None:
        import tempfile

        from celeryflow.testing.databases import sqlite_logbook
        from celeryflow.testing.runner import FlowRunner

        with tempfile.TemporaryDirectory(prefix="celeryflow-") as directory, sqlite_logbook(directory) as url:
            return for_each_failure_point(flow, store, runner=FlowRunner(url), where=where, observe=observe,
                                          reset=reset, check=check, raise_on_problems=raise_on_problems, **options)
    where = tuple(where)
    if not where or set(where) - {BEFORE, AFTER}:
        raise ValueError(f"where={where!r}: failure points are {BEFORE!r} and/or {AFTER!r} an execute "
                         "(a failing revert needs a failing flow: run(fail=[fail_after(a), fail_revert(b)]))")
    def point(fault: Fault | None) -> PointResult:
        if reset is not None:
            reset()
        return _point(runner, flow, store, fault, observe, check, options)

    baseline = point(None)
    comp = baseline.outcome.comp
    assert comp is not None
    ran = [n for n in dict.fromkeys(baseline.outcome.executed) if comp.atoms[n].kind == "task"]
    results = [baseline] if baseline.outcome.state != states.SUCCESS else []
    for name in ran:
        for where_ in where:
            results.append(point(Fault(name, where_)))
    found = FailurePoints(baseline.outcome, results)
    if raise_on_problems:
        found.raise_for_problems()
    return found


def _point(runner: FlowRunner, flow: FlowSource, store: Mapping[str, Any] | None, fault: Fault | None,
           observe: Callable[[], Any] | None, check: Callable[[Outcome], None] | None,
           options: Mapping[str, Any]) -> PointResult:
    before = observe() if observe is not None else None
    outcome = runner.run(flow, store, fail=fault, **options)
    result = PointResult(fault, outcome)
    if fault is None and outcome.state == states.SUCCESS:
        return result
    result.problems = compensation_problems(outcome)
    if observe is not None:
        after = observe()
        if after != before:
            result.problems.append(f"the world is not as before the run: {describe_change(before, after)}")
    if check is not None:
        try:
            check(outcome)
        except AssertionError as exc:
            result.problems.append(f"check failed: {exc}")
    return result
