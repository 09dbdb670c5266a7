"""The scheduler's bookkeeping on a flow row: its typed columns, decoded and written in one place.

The scheduler keeps what it needs between transactions in columns of its own
(migration 0006), not in the flow's ``meta`` JSON, where user metadata and engine
options live (a search of that text once mistook a user option for scheduler state):

* ``retry_scopes``: the retry scopes being reverted for a retry,
  ``{controller: {"countdown": seconds, "plan": {atom: [atoms reverted after it]}}}``;
  ``scope_retrying``, the cheap flag every message tests, is derived from it here and
  nowhere else;
* ``revert_scope``: the atoms the current compensation is restricted to (None: all);
* ``revert_plan``: the current compensation's plan (None: not planned yet);
* ``revert_failed`` (a plain Boolean attribute): a revert of this compensation failed;
* ``outstanding`` and ``held``, the in-flight counts the dispatch window and ``settle``
  read: written by the general path only through :func:`count_queued`, :func:`count_left`
  and :func:`set_in_flight` (the fast paths write the same numbers in their own statements,
  from the same :mod:`celeryflow.scheduler.admission` rules).

The atoms' counterparts (``lost_execute``/``lost_revert``, ``verdicts``, ``on_failure``)
are read by their own queries in :mod:`~celeryflow.runtime.reclaim`,
:mod:`~celeryflow.runtime.verdicts` and :mod:`~celeryflow.runtime.scope_decisions`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from celeryflow import serialization
from celeryflow.persistence.rows import FlowState

#: {controller: {"countdown": float, "plan": {atom: [atoms reverted after it]}}}
RetryScopes = dict[str, dict[str, Any]]
#: {atom: [atoms reverted after it]}
Plan = dict[str, list[str]]


def retry_scopes(flow: FlowState) -> RetryScopes:
    """The retry scopes being reverted for a retry (a copy: change it, then :func:`set_retry_scopes`)."""
    decoded = serialization.loads(flow.retry_scopes) if flow.retry_scopes else None
    if not isinstance(decoded, dict):
        return {}
    return {str(name): dict(entry or {}) for name, entry in decoded.items()}


def set_retry_scopes(flow: FlowState, active: Mapping[str, Mapping[str, Any]]) -> None:
    """Write the retry scopes, and the flag derived from them (the only writer of either)."""
    flow.retry_scopes = serialization.dumps({k: dict(v) for k, v in active.items()}, "retry scopes") if active else None
    flow.scope_retrying = bool(active)


def revert_scope(flow: FlowState) -> list[str] | None:
    """The atoms the current compensation is restricted to; None: the whole flow."""
    decoded = serialization.loads(flow.revert_scope) if flow.revert_scope else None
    return [str(name) for name in decoded] if isinstance(decoded, list) else None


def set_revert_scope(flow: FlowState, names: Iterable[str] | None) -> None:
    flow.revert_scope = None if names is None else serialization.dumps(list(names), "revert scope")


def revert_plan(flow: FlowState) -> Plan | None:
    """The current compensation's plan; None: not planned yet."""
    decoded = serialization.loads(flow.revert_plan) if flow.revert_plan else None
    return {str(k): list(v) for k, v in decoded.items()} if isinstance(decoded, dict) else None


def set_revert_plan(flow: FlowState, plan: Mapping[str, list[str]] | None) -> None:
    flow.revert_plan = None if plan is None else serialization.dumps(dict(plan), "revert plan")


def forget_compensation(flow: FlowState) -> None:
    """A new compensation (or none) starts from nothing: no plan, no failed revert."""
    flow.revert_plan = None
    flow.revert_failed = False


def forget_retries(flow: FlowState) -> None:
    """Drop the retry bookkeeping (re-run from scratch, reset, revert on request)."""
    set_retry_scopes(flow, {})
    flow.revert_scope = None


def mark_revert_failed(flow: FlowState) -> None:
    """A revert of the current compensation failed (the atom's ``revert_failure`` says which and why)."""
    flow.revert_failed = True


# ------------------------------------------------------------------ the in-flight counts


def count_queued(flow: FlowState, count: int) -> None:
    """``count`` more atoms of the flow are on the broker (queued for execute or revert)."""
    flow.outstanding += count


def count_left(flow: FlowState) -> None:
    """One atom left the flow's in-flight set: its claim ended, or its message was refused."""
    flow.outstanding -= 1


def set_in_flight(flow: FlowState, in_flight: int, held: int | None = None) -> None:
    """The in-flight count recomputed (start, resume, revert request, reclaim, an end); ``held`` too if given."""
    flow.outstanding = in_flight
    if held is not None:
        flow.held = held


def set_held(flow: FlowState, held: int) -> None:
    """Ready atoms the dispatch window keeps back (:mod:`celeryflow.scheduler.admission`)."""
    flow.held = held
