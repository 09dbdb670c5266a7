"""TaskFlow's ``listeners.timing``: :class:`DurationListener`, :class:`PrintingDurationListener`,
:class:`EventTimeListener`.

Durations and timestamps are measured in the process that follows the flow (where
the events are delivered), and saved in the logbook as atom and flow metadata
(``storage.get_atom_metadata(name)["duration"]``, ``storage.flow_meta``). With
remote workers a duration includes the delivery delay of the two events.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from typing import Any

from celeryflow import states
from celeryflow.exceptions import NotFound, StorageFailure
from celeryflow.listeners import base

#: TaskFlow's item kinds, as in its messages ("It took task 'x' ...")
TASK = "task"
FLOW = "flow"

STARTING_STATES = frozenset((states.RUNNING, states.REVERTING))
FINISHED_STATES = frozenset((*base.FINISH_STATES, states.REVERTED))
WATCH_STATES = frozenset(itertools.chain(FINISHED_STATES, STARTING_STATES, [states.PENDING]))

LOG = logging.getLogger(__name__)


class _StopWatch:
    def __init__(self) -> None:
        self._started = time.monotonic()
        self._stopped: float | None = None

    def stop(self) -> None:
        self._stopped = time.monotonic()

    def elapsed(self) -> float:
        return (self._stopped if self._stopped is not None else time.monotonic()) - self._started


def _printer(message: str) -> None:
    print(message)


class DurationListener(base.Listener):
    """Saves how long each task (and the flow) took, in seconds, as metadata key ``duration``.

    Args:
        engine: the engine to listen to.
    """

    def __init__(self, engine: Any) -> None:
        super().__init__(engine, task_listen_for=WATCH_STATES, flow_listen_for=WATCH_STATES)
        self._timers: dict[str, dict[str, _StopWatch]] = {TASK: {}, FLOW: {}}

    def deregister(self) -> None:
        super().deregister()
        for item_type, timers in self._timers.items():
            if timers:
                LOG.warning("%s %s(s) did not enter %s states", len(timers), item_type, FINISHED_STATES)
            timers.clear()

    def _record_ending(self, timer: _StopWatch, item_type: str, item_name: str, state: str) -> None:
        meta_update = {"duration": timer.elapsed()}
        try:
            storage = self._engine.storage
            if item_type == FLOW:
                storage.update_flow_metadata(meta_update)
            else:
                storage.update_atom_metadata(item_name, meta_update)
        except (StorageFailure, NotFound):
            LOG.warning("Failure to store duration update %s for %s %s", meta_update, item_type, item_name,
                        exc_info=True)

    def _task_receiver(self, state: str, details: dict[str, Any]) -> None:
        self._receiver(TASK, details["task_name"], state)

    def _flow_receiver(self, state: str, details: dict[str, Any]) -> None:
        self._receiver(FLOW, details["flow_name"], state)

    def _receiver(self, item_type: str, item_name: str, state: str) -> None:
        if state == states.PENDING:
            self._timers[item_type].pop(item_name, None)
        elif state in STARTING_STATES:
            self._timers[item_type][item_name] = _StopWatch()
        elif state in FINISHED_STATES:
            timer = self._timers[item_type].pop(item_name, None)
            if timer is not None:
                timer.stop()
                self._record_ending(timer, item_type, item_name, state)


class PrintingDurationListener(DurationListener):
    """A :class:`DurationListener` that also prints each start and duration (TaskFlow's messages).

    Args:
        engine: the engine to listen to.
        printer: called with each message (default: ``print``).
    """

    def __init__(self, engine: Any, printer: Callable[[str], Any] | None = None) -> None:
        super().__init__(engine)
        self._printer = printer or _printer

    def _record_ending(self, timer: _StopWatch, item_type: str, item_name: str, state: str) -> None:
        super()._record_ending(timer, item_type, item_name, state)
        self._printer(f"It took {item_type} '{item_name}' {timer.elapsed():0.2f} seconds to finish.")

    def _receiver(self, item_type: str, item_name: str, state: str) -> None:
        super()._receiver(item_type, item_name, state)
        if state in STARTING_STATES:
            self._printer(f"'{item_name}' {item_type} started.")


class EventTimeListener(base.Listener):
    """Saves when each event was received (unix time) as metadata ``<state>-timestamp``.

    Takes the arguments of :class:`~celeryflow.listeners.base.Listener` (default: every event).
    """

    def _record_atom_event(self, state: str, atom_name: str) -> None:
        meta_update = {f"{state}-timestamp": time.time()}
        try:
            self._engine.storage.update_atom_metadata(atom_name, meta_update)
        except (StorageFailure, NotFound):
            LOG.warning("Failure to store timestamp %s for atom %s", meta_update, atom_name, exc_info=True)

    def _flow_receiver(self, state: str, details: dict[str, Any]) -> None:
        meta_update = {f"{state}-timestamp": time.time()}
        try:
            self._engine.storage.update_flow_metadata(meta_update)
        except (StorageFailure, NotFound):
            LOG.warning("Failure to store timestamp %s for flow %s", meta_update, details["flow_name"],
                        exc_info=True)

    def _task_receiver(self, state: str, details: dict[str, Any]) -> None:
        self._record_atom_event(state, details["task_name"])

    def _retry_receiver(self, state: str, details: dict[str, Any]) -> None:
        self._record_atom_event(state, details["retry_name"])


__all__ = ["DurationListener", "EventTimeListener", "PrintingDurationListener"]
