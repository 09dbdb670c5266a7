"""Retry scopes at run time: what a failure inside a retry controller's subflow does.

Called from the logbook transactions of :mod:`celeryflow.runtime.steps` and
:mod:`celeryflow.runtime.control`, with the flow row locked.

When an atom fails, its nearest enclosing controller's ``on_failure(history)``
is consulted (the failure is first added to the controller's current history
entry, persisted in the controller's ``atoms.history`` column). The outcome,
as in TaskFlow's completer:

* RETRY (controller ``C``): the flow stays RUNNING. ``C`` goes RETRYING and is
  recorded in the flow's ``retry_scopes`` column (and flagged in the typed column
  ``flows.scope_retrying``, the cheap test every message makes). Its members stop starting
  (queued ones are refused, ready ones are not queued); once none of them is
  queued or running the executed members are reverted in reverse dependency
  order (a plan kept with the scope, counted down in ``atoms.rwaiting``); then the
  members return to PENDING and ``C`` is executed again (with an optional
  countdown from ``C.countdown(attempt)``), providing the next value. Atoms
  outside the scope are not disturbed: joins are counted in the logbook, so a
  sibling branch keeps running and its successors wait for the scope's exits.
* REVERT: the enclosing controller is consulted in turn (with the failure
  recorded under ``C``'s name). Without ``defer_reverts`` a parent that decides
  RETRY or REVERT_ALL wins, else only ``C``'s subflow (and what depends on it)
  is reverted; with ``defer_reverts=True`` the parent's resolution is used
  (no parent: the whole flow is reverted).
* REVERT_ALL (or no controller): the whole flow is reverted.

Reverting "only a subflow" uses the flow-level compensation with a scope
(the ``flows.revert_scope`` column): the flow goes REVERTING (no new atom starts),
atoms running elsewhere finish, then only the scope's executed atoms are
reverted; atoms outside it keep their results; the flow ends REVERTED.

This module holds the scopes' bookkeeping (the controllers' histories, which
scope an atom is in; the flow's columns are read through
:mod:`celeryflow.runtime.bookkeeping`); :mod:`celeryflow.runtime.scope_decisions`
decides what a failure leads to, and :mod:`celeryflow.runtime.scope_rounds`
drives a retry round to its end.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from celeryflow import serialization, states
from celeryflow.persistence.rows import FlowState
from celeryflow.persistence.tables import AtomRow
from celeryflow.runtime import bookkeeping
from celeryflow.runtime.logbook import decode_failures
from celeryflow.scheduler.compensation import EXECUTED as EXECUTED  # executed: reverted before a retry

if TYPE_CHECKING:
    from celeryflow.compiler import Compilation

LOG = logging.getLogger(__name__)

DECISIONS = (states.RETRY, "REVERT", "REVERT_ALL")

#: Look up the live controller object of a retry atom by name.
ControllerLookup = Callable[[str], Any]


# --------------------------------------------------------------------------- small helpers


def retrying(flow: FlowState) -> dict[str, dict[str, Any]]:
    """``{controller: {"countdown": s, "plan": ...}}`` of the scopes being reverted for a retry."""
    return bookkeeping.retry_scopes(flow) if might_be_handled(flow) else {}


def enclosing(comp: Compilation, name: str) -> Iterator[str]:
    """The retry controllers enclosing atom ``name``, nearest first."""
    current = comp.atoms[name].retry
    while current is not None:
        yield current
        current = comp.atoms[current].retry


def handled_scope(comp: Compilation, active: Mapping[str, Any], name: str) -> str | None:
    """The controller whose scope (being reverted for a retry, ``active``: :func:`retrying`) contains ``name``."""
    if not active:
        return None
    for controller in enclosing(comp, name):
        if controller in active:
            return controller
    return None


def might_be_handled(flow: FlowState) -> bool:
    """Cheap pre-check before decoding ``retry_scopes``: is any scope being retried?

    A typed flag (``flows.scope_retrying``, written with ``retry_scopes`` by
    :func:`bookkeeping.set_retry_scopes`); the fast path tests it in SQL.
    """
    return bool(flow.scope_retrying)


def members(comp: Compilation, controller: str) -> tuple[str, ...]:
    return comp.retries[controller].members


def revert_set(comp: Compilation, controller: str) -> set[str]:
    """What reverting ``controller``'s subflow covers: it, its members, and what depends on them."""
    return {controller, *members(comp, controller), *comp.descendants(controller)}


def load_history(session: Session, flow_uuid: str, controller: str) -> list[list[Any]]:
    raw = session.scalar(
        select(AtomRow.history).where(AtomRow.flow_uuid == flow_uuid, AtomRow.name == controller)
    )
    return list(serialization.loads(raw) or [])


def save_history(session: Session, flow_uuid: str, controller: str, history: list[list[Any]]) -> None:
    session.execute(
        update(AtomRow)
        .where(AtomRow.flow_uuid == flow_uuid, AtomRow.name == controller)
        .values(history=serialization.dumps(history, f"retry history of {controller!r}"))
        .execution_options(synchronize_session=False)
    )


def record_value(session: Session, flow_uuid: str, controller: str, value: Any) -> None:
    """A controller succeeded: open a new history entry with the value it provided."""
    history = load_history(session, flow_uuid, controller)
    history.append([value, {}])
    save_history(session, flow_uuid, controller, history)


def record_failure(
    session: Session, flow_uuid: str, controller: str, atom: str, failure: dict[str, Any]
) -> list[list[Any]]:
    """Add ``atom``'s failure to the controller's current attempt; return the history."""
    history = load_history(session, flow_uuid, controller)
    if not history:
        history.append([None, {}])
    history[-1][1] = dict(history[-1][1] or {})
    history[-1][1][atom] = failure
    save_history(session, flow_uuid, controller, history)
    return history


def revert_failures(session: Session, comp: Compilation, flow: FlowState, name: str) -> dict[str, Any]:
    """The ``flow_failures`` a revert of ``name`` receives (failure dicts by atom name).

    As TaskFlow, every failure that stands: the flow's recorded failures (a flow revert),
    and, when ``name`` is reverted for a retry of its scope, the failures of the scope's
    members in the attempt being undone (they are not flow failures: the flow may still
    succeed; they are cleared when the round resets the scope).
    """
    failures = decode_failures(flow)
    controller = handled_scope(comp, retrying(flow), name)
    if controller is not None:
        rows = session.execute(
            select(AtomRow.name, AtomRow.failure).where(
                AtomRow.flow_uuid == flow.uuid, AtomRow.name.in_(list(members(comp, controller))),
                AtomRow.failure.is_not(None),
            )
        )
        for member, text in rows:
            failures.setdefault(member, serialization.loads(text))
    return failures


def in_order(comp: Compilation, names: Iterable[str]) -> list[str]:
    """``names`` in the compilation's (topological) order."""
    return sorted(names, key=lambda n: comp.atoms[n].index)


def blocked(comp: Compilation, flow: FlowState, name: str) -> bool:
    """True when ``name`` must not start: its scope is being reverted for a retry."""
    if comp.atoms[name].retry is None or not might_be_handled(flow):
        return False
    return handled_scope(comp, retrying(flow), name) is not None
