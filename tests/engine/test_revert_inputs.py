"""What a revert is handed: ``flow_failures`` on a retry round as on a flow revert (TaskFlow's contract).

The scheduler is driven by hand (control.start, steps.begin/finish, as in test_window.py),
so the claim of each revert can be looked at on every logbook.
"""

from __future__ import annotations

from typing import Any

from celeryflow import engines, retry, task
from celeryflow.patterns import linear_flow
from celeryflow.persistence.backends import fetch
from celeryflow.runtime import control, steps
from celeryflow.runtime.logbook import EXECUTE, REVERT
from celeryflow.types.failure import Failure


class Plain(task.Task):
    def execute(self, attempt: int) -> int:
        return attempt


def _failure(name: str) -> dict[str, Any]:
    return Failure.from_exception(ValueError(f"{name} failed")).to_dict()


def _reverts_see(url: str, flow: Any, fail: str, times: int, store: dict[str, Any] | None = None
                 ) -> dict[str, dict[str, Any]]:
    """Run ``flow`` by hand, ``fail`` failing its first ``times`` executions; each revert's flow_failures."""
    engine = engines.load(flow, store=store, backend=url)
    engine.prepare()
    backend, comp, flow_uuid = fetch(url), engine.compile(), engine.flow_uuid
    first = control.start(backend, comp, flow_uuid, owner="test")
    todo = [(name, EXECUTE) for name in first.execute]
    failed = 0
    seen: dict[str, dict[str, Any]] = {}
    while todo:
        name, mode = todo.pop(0)
        begun = steps.begin(backend, comp, flow_uuid, name, first.epoch, mode, "w:1")
        assert begun.verdict is steps.Verdict.RUN, (name, mode, begun.reason)
        failure = None
        if mode == REVERT:
            seen[name] = dict(begun.flow_failures or {})
        elif name == fail and failed < times:
            failed += 1
            failure = _failure(name)
        after = steps.finish(backend, comp, flow_uuid, name, first.epoch, mode, "w:1",
                             result=None if failure else 1, failure=failure)
        assert after is not None
        todo.extend((n, EXECUTE) for n in after.execute)
        todo.extend((n, REVERT) for n in after.revert)
    return seen


def _retried() -> linear_flow.Flow:
    sub = linear_flow.Flow("sub", retry=retry.Times(2, name="r", provides="attempt")).add(
        Plain("x", provides="a"), Plain("y", provides="b")
    )
    return linear_flow.Flow("retried").add(sub)


def test_reverts_of_a_retry_round_receive_the_failed_atom(any_db_url: str) -> None:
    seen = _reverts_see(any_db_url, _retried(), fail="y", times=1)
    assert list(seen) == ["y", "x"]  # the round, in reverse order; then r runs again and succeeds
    for received in seen.values():
        assert list(received) == ["y"]
        assert Failure.from_dict(received["y"]).check(ValueError)


def test_reverts_of_a_flow_revert_receive_the_failed_atom(any_db_url: str) -> None:
    flow = linear_flow.Flow("plain").add(Plain("x", provides="a"), Plain("y", provides="b"))
    seen = _reverts_see(any_db_url, flow, fail="y", times=1, store={"attempt": 1})
    assert sorted(seen) == ["x", "y"]
    assert all(list(received) == ["y"] for received in seen.values())
