"""Logbook events as an engine's notifications: flow events to ``notifier``, atom events to ``atom_notifier``.

The engine follows its flow's events in the logbook (see ``waiter``) and hands each one
here, so callbacks run in the caller's process whatever worker ran the atoms; the details
carry TaskFlow's keys (``flow_name``/``flow_uuid``, ``task_name``/``atom_name``, ``old_state``,
``result``, and those of ``atom_details``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from celeryflow import states
from celeryflow.engines.atom_details import add_taskflow_keys
from celeryflow.engines.waiter import event_details
from celeryflow.task import EVENT_UPDATE_PROGRESS as EVENT_UPDATE_PROGRESS  # TaskFlow's task.EVENT_UPDATE_PROGRESS

if TYPE_CHECKING:
    from celeryflow.engines.engine import CeleryEngine
    from celeryflow.persistence.tables import EventRow


#: the flow states notified: TaskFlow's flow state machine (taskflow/states.py) minus PENDING,
#: which TaskFlow's engines never notify (celeryflow's REVERTING is internal, as TaskFlow's is)
NOTIFIED_FLOW_STATES = frozenset({states.RUNNING, states.SUCCESS, states.FAILURE, states.REVERTED,
                                  states.SUSPENDING, states.SUSPENDED, states.RESUMING})


class EventRelay:
    """Turns one engine's logbook events into its notifications, remembering the states notified.

    It holds no reference to the engine (the engine is passed to :meth:`deliver`), so an
    engine and its relay make no reference cycle.
    """

    def __init__(self) -> None:
        #: the last flow state notified (the ``old_state`` of the next flow notification)
        self.flow_state: str | None = None
        #: the last state seen per atom (the ``old_state`` where the logbook row has none:
        #: the fast path records a start as None -> RUNNING, TaskFlow says PENDING -> RUNNING)
        self.atom_states: dict[str, str] = {}

    def deliver(self, engine: CeleryEngine, row: EventRow) -> None:
        """Notify ``engine``'s listeners of the event ``row`` (if it is one they are told of)."""
        details = event_details(row)
        if row.kind == "flow":
            # TaskFlow's flow state machine has no PENDING/REVERTING notifications: not sent
            if row.new_state not in NOTIFIED_FLOW_STATES:
                return
            old, self.flow_state = self.flow_state or row.old_state, row.new_state
            details.update(flow_name=engine.compile().flow_name, flow_uuid=engine.flow_uuid, old_state=old)
            engine.notifier.notify(row.new_state or "", details)
        elif row.kind == "atom":
            name = row.atom_name or ""
            old = row.old_state or self.atom_states.get(name, states.PENDING)
            self.atom_states[name] = row.new_state or old
            details.update(task_name=row.atom_name, atom_name=row.atom_name, flow_uuid=engine.flow_uuid,
                           old_state=old)
            if not len(engine.atom_notifier):
                return  # nobody listens: don't read the result back (a transaction per atom)
            if row.new_state == states.SUCCESS:
                details["result"] = _lazy_result(engine, row.atom_name)
            add_taskflow_keys(engine, row.atom_name, row.new_state or "", details)
            engine.atom_notifier.notify(row.new_state or "", details)
        elif row.kind == "progress":
            details.update(task_name=row.atom_name, atom_name=row.atom_name, flow_uuid=engine.flow_uuid)
            engine.atom_notifier.notify(EVENT_UPDATE_PROGRESS, details)


def _lazy_result(engine: CeleryEngine, atom_name: str | None) -> Any:
    if atom_name is None:
        return None
    try:
        return engine.storage.get(atom_name)
    except Exception:
        return None


__all__ = ["EVENT_UPDATE_PROGRESS", "NOTIFIED_FLOW_STATES", "EventRelay"]
