"""Retry controllers at run time: their history lives in the logbook."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celeryflow.runtime.context import FlowRuntime


def call_retry_execute(atom: Any, kwargs: dict[str, Any], runtime: FlowRuntime, name: str) -> Any:
    """Run a retry controller's ``execute(history, ...)`` with its persisted history."""
    from celeryflow.retry import History

    history = kwargs.pop("__history__", None)
    return atom.execute(history if history is not None else History(), **kwargs)
