"""What bench/soak.py found, as deterministic reproductions driven by hand (no processes).

Each test failed before its fix (``xfail(strict=True)`` while the bug was open) and is kept as
the regression test.
"""

from __future__ import annotations

from celeryflow import retry, states
from celeryflow.patterns import linear_flow
from celeryflow.runtime import control, steps
from celeryflow.runtime.logbook import EXECUTE, REVERT, Dispatch
from tests.support.handdrive import HandFlow, Step


def test_resume_after_a_suspend_between_retry_rounds_runs_the_next_attempt(db_url: str) -> None:
    """Found by ``python bench/soak.py --seed 25``: f021 (shape ``retry``) stayed RUNNING until the deadline.

    pre -> [Times(3): x0 -> x1] -> post; x1 fails on attempt 1. The round is reverted (x1, x0)
    and reset (x0, x1 PENDING, ``times`` RETRYING) and the controller's next attempt is queued;
    ``suspend()`` lands before that message is claimed, so the message is refused and the flow
    settles SUSPENDED. ``resume()`` then queues nothing (``times`` is RETRYING, not PENDING, and
    the scope is no longer being reverted): the flow is RUNNING with nothing in flight, and
    every sweep re-drives it the same way (epoch 46 after 3 minutes in the soak).
    """
    flow = HandFlow(db_url, linear_flow.Flow("r").add(
        Step("pre"),
        linear_flow.Flow("scope", retry=retry.Times(3, name="times")).add(Step("x0"), Step("x1")),
        Step("post"),
    ))
    todo: list[tuple[str, str, int]] = []

    def add(d: Dispatch | None) -> None:
        if d is not None:
            todo.extend((n, EXECUTE, d.epoch) for n in d.execute)
            todo.extend((n, REVERT, d.epoch) for n in d.revert)

    add(flow.start())
    failed = False
    while todo and not (failed and todo[0][:2] == ("times", EXECUTE)):
        name, mode, epoch = todo.pop(0)
        begun = flow.begin(name, "w:1", mode, epoch)
        assert begun.verdict is steps.Verdict.RUN, (name, mode, begun.verdict)
        fail = name == "x1" and mode == EXECUTE and not failed
        failed = failed or fail
        add(flow.finish(name, "w:1", epoch, mode, fail=fail))
    assert todo and todo[0][:2] == ("times", EXECUTE), "the controller's next attempt is queued"
    assert flow.atom_states() == {"pre": states.SUCCESS, "times": states.RETRYING, "x0": states.PENDING,
                                  "x1": states.PENDING, "post": states.PENDING}
    control.suspend(flow.backend, flow.comp, flow.id)
    name, mode, epoch = todo.pop(0)
    assert flow.begin(name, "w:1", mode, epoch).verdict is steps.Verdict.REFUSE
    add(steps.refuse(flow.backend, flow.comp, flow.id, name, epoch, "w:1", mode))
    assert flow.state == states.SUSPENDED
    flow.deliver(flow.start())  # resume
    assert flow.state == states.SUCCESS, flow.atom_states()
