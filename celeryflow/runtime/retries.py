"""Retry controllers at run time: calling them with their history, which lives in the logbook.

A controller's history is the JSON list ``[[provided value, {atom name:
failure dict}], ...]`` in its ``atoms.history`` column: an entry is opened when
the controller succeeds (with the value it provided) and the failures of that
attempt are added to it (see :mod:`celeryflow.runtime.scopes`, which also
decides what a failure leads to).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celeryflow.retry import History
    from celeryflow.types.failure import Failure


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
