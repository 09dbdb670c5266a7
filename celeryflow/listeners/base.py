"""TaskFlow's ``listeners.base``: :class:`Listener` and :class:`DumpingListener`."""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable, Iterable
from typing import Any

from celeryflow import states
from celeryflow.types.failure import Failure
from celeryflow.types.notifier import Notifier

LOG = logging.getLogger(__name__)

#: states in which an atom's event carries a usable ``result``
FINISH_STATES = (states.FAILURE, states.SUCCESS, states.REVERTED, states.REVERT_FAILURE)

#: what is listened for by default: every event
DEFAULT_LISTEN_FOR = (Notifier.ANY,)

_Filter = Callable[[dict[str, Any]], bool]
_Registered = list[tuple[str, Callable[..., Any]]]


def _task_matcher(details: dict[str, Any]) -> bool:
    """Whether an atom event is a task's (TaskFlow: it has ``task_name`` and ``task_uuid``)."""
    return bool(details) and "task_name" in details and "task_uuid" in details


def _retry_matcher(details: dict[str, Any]) -> bool:
    """Whether an atom event is a retry controller's (``retry_name`` and ``retry_uuid``)."""
    return bool(details) and "retry_name" in details and "retry_uuid" in details


def _bulk_deregister(notifier: Notifier, registered: _Registered, details_filter: _Filter | None = None) -> None:
    while registered:
        state, cb = registered.pop()
        notifier.deregister(state, cb, details_filter=details_filter)


def _bulk_register(
    watch_states: Iterable[str], notifier: Notifier, cb: Callable[..., Any], details_filter: _Filter | None = None
) -> _Registered:
    registered: _Registered = []
    try:
        for state in watch_states:
            if not notifier.is_registered(state, cb, details_filter=details_filter):
                notifier.register(state, cb, details_filter=details_filter)
                registered.append((state, cb))
    except ValueError:
        _bulk_deregister(notifier, registered, details_filter=details_filter)
        raise
    return registered


class Listener:
    """Base class of listeners: register on an engine's notifiers, as a context manager too.

    Override ``_flow_receiver``, ``_task_receiver`` and/or ``_retry_receiver``
    (``(state, details)``); they do nothing here.

    Args:
        engine: the engine whose ``notifier`` and ``atom_notifier`` to listen to.
        task_listen_for: task states (events) to receive; ``Notifier.ANY`` for all.
        flow_listen_for: flow states to receive.
        retry_listen_for: retry controller states to receive.
    """

    def __init__(
        self,
        engine: Any,
        task_listen_for: Iterable[str] = DEFAULT_LISTEN_FOR,
        flow_listen_for: Iterable[str] = DEFAULT_LISTEN_FOR,
        retry_listen_for: Iterable[str] = DEFAULT_LISTEN_FOR,
    ) -> None:
        self._listen_for = {
            "task": list(task_listen_for or []),
            "retry": list(retry_listen_for or []),
            "flow": list(flow_listen_for or []),
        }
        self._engine = engine
        self._registered: dict[str, _Registered] = {}

    def _flow_receiver(self, state: str, details: dict[str, Any]) -> None:
        pass

    def _task_receiver(self, state: str, details: dict[str, Any]) -> None:
        pass

    def _retry_receiver(self, state: str, details: dict[str, Any]) -> None:
        pass

    def deregister(self) -> None:
        """Remove this listener's callbacks from the engine's notifiers."""
        if "task" in self._registered:
            _bulk_deregister(self._engine.atom_notifier, self._registered.pop("task"), details_filter=_task_matcher)
        if "retry" in self._registered:
            _bulk_deregister(self._engine.atom_notifier, self._registered.pop("retry"), details_filter=_retry_matcher)
        if "flow" in self._registered:
            _bulk_deregister(self._engine.notifier, self._registered.pop("flow"))

    def register(self) -> None:
        """Add this listener's callbacks to the engine's notifiers (once)."""
        if "task" not in self._registered:
            self._registered["task"] = _bulk_register(
                self._listen_for["task"], self._engine.atom_notifier, self._task_receiver, details_filter=_task_matcher
            )
        if "retry" not in self._registered:
            self._registered["retry"] = _bulk_register(
                self._listen_for["retry"], self._engine.atom_notifier, self._retry_receiver,
                details_filter=_retry_matcher,
            )
        if "flow" not in self._registered:
            self._registered["flow"] = _bulk_register(
                self._listen_for["flow"], self._engine.notifier, self._flow_receiver
            )

    def __enter__(self) -> Listener:
        self.register()
        return self

    def __exit__(self, exc_type: Any, value: Any, tb: Any) -> None:
        try:
            self.deregister()
        except Exception:
            # deregistering never raises out of a with block (as in TaskFlow)
            LOG.warning("Failed deregistering listeners from engine %s", self._engine, exc_info=True)


class DumpingListener(Listener, metaclass=abc.ABCMeta):
    """A listener that writes each flow and task transition as one templated message.

    Subclasses define ``_dump(message, *args, **kwargs)``; the messages are TaskFlow's,
    word for word.
    """

    @abc.abstractmethod
    def _dump(self, message: str, *args: Any, **kwargs: Any) -> None:
        """Write the *templated* ``message`` (``message % args``) somewhere."""

    def _flow_receiver(self, state: str, details: dict[str, Any]) -> None:
        self._dump(
            "%s has moved flow '%s' (%s) into state '%s' from state '%s'",
            self._engine, details["flow_name"], details["flow_uuid"], state, details["old_state"],
        )

    def _task_receiver(self, state: str, details: dict[str, Any]) -> None:
        if state in FINISH_STATES:
            result = details.get("result")
            exc_info = None
            was_failure = False
            if isinstance(result, Failure):
                if result.exc_info:
                    exc_info = tuple(result.exc_info)
                was_failure = True
            self._dump(
                "%s has moved task '%s' (%s) into state '%s' from state '%s' with result '%s' (failure=%s)",
                self._engine, details["task_name"], details["task_uuid"], state, details["old_state"], result,
                was_failure, exc_info=exc_info,
            )
        else:
            self._dump(
                "%s has moved task '%s' (%s) into state '%s' from state '%s'",
                self._engine, details["task_name"], details["task_uuid"], state, details["old_state"],
            )


__all__ = ["DEFAULT_LISTEN_FOR", "FINISH_STATES", "DumpingListener", "Listener"]
