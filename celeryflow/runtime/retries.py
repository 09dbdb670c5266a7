"""Retry controllers at run time: calling them with their history, which lives in the logbook.

A controller's history is the JSON list ``[[provided value, {atom name:
failure dict}], ...]`` in its ``atoms.history`` column: an entry is opened when
the controller succeeds (with the value it provided) and the failures of that
attempt are added to it (see :mod:`celeryflow.runtime.scopes`, which also
decides what a failure leads to).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from celeryflow import states

if TYPE_CHECKING:
    from celeryflow.retry import History
    from celeryflow.types.failure import Failure

LOG = logging.getLogger(__name__)


def history_of(data: Sequence[Any] | None) -> History:
    """The :class:`~celeryflow.retry.History` of a stored history list."""
    from celeryflow.retry import History

    return History.from_list(data or [])


def call_retry_execute(atom: Any, kwargs: dict[str, Any], history: Sequence[Any] | None) -> Any:
    """Run a controller's ``execute(history, ...)``: it returns the value for this attempt."""
    kwargs = dict(kwargs)
    kwargs.pop("history", None)
    return atom.execute(history_of(history), **kwargs)


def call_retry_revert(
    atom: Any, kwargs: dict[str, Any], history: Sequence[Any] | None, flow_failures: Mapping[str, Failure]
) -> Any:
    """Run a controller's ``revert(history, flow_failures=..., ...)`` (as TaskFlow passes them)."""
    kwargs = dict(kwargs)
    kwargs.pop("history", None)
    if _accepts(atom.revert, "flow_failures"):
        kwargs.setdefault("flow_failures", dict(flow_failures))
    return atom.revert(history_of(history), **kwargs)


def _accepts(fn: Any, param: str) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.kind is p.VAR_KEYWORD or p.name == param for p in params)


def on_failure_verdict(controller: str, flow_uuid: str, obj: Any, history: Sequence[Any],
                       kwargs: Mapping[str, Any]) -> list[Any]:
    """Ask a controller (user code: never inside a transaction) what a failure leads to.

    Returns ``[decision, countdown, problem]``: ``problem`` is the failure dict that
    reverts the whole flow when the controller could not decide (it raised, or
    answered something else than RETRY, REVERT or REVERT_ALL).
    """
    from celeryflow.runtime.scopes import DECISIONS

    try:
        hist = history_of(history)
        decision = str(obj.on_failure(hist, **kwargs))
        if decision not in DECISIONS:
            raise ValueError(f"on_failure returned {decision!r}; expected RETRY, REVERT or REVERT_ALL")
        countdown = float(obj.countdown(len(hist))) if decision == states.RETRY else 0.0
        return [decision, max(0.0, countdown), None]
    except Exception as exc:
        return list(could_not_decide(controller, flow_uuid, exc))


def could_not_decide(controller: str, flow_uuid: str, exc: Exception) -> tuple[str, float, dict[str, Any]]:
    from celeryflow.exceptions import ExecutionFailure
    from celeryflow.types.failure import Failure

    LOG.warning("retry controller %s of flow %s could not decide: %r", controller, flow_uuid, exc)
    err = ExecutionFailure(
        f"Retry controller {controller!r} could not decide what to do about a failure "
        f"({type(exc).__name__}: {exc}); the whole flow is reverted",
        exc,
    )
    return "REVERT_ALL", 0.0, Failure.from_exception(err).to_dict()
