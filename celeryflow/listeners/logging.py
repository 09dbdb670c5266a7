"""TaskFlow's ``listeners.logging``: :class:`LoggingListener` and :class:`DynamicLoggingListener`."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from typing import Any

from celeryflow import states
from celeryflow.formatters import FailureFormatter
from celeryflow.listeners import base
from celeryflow.types.failure import Failure

LOG = logging.getLogger(__name__)


class LoggingListener(base.DumpingListener):
    """Logs flow and task transitions (TaskFlow's messages) to a logger, at one level.

    Args:
        engine, task_listen_for, flow_listen_for, retry_listen_for: as for
            :class:`~celeryflow.listeners.base.Listener` (default: every event).
        log: the logger (default: the class's ``_LOGGER``, else this module's).
        level: the level (default ``logging.DEBUG``).
    """

    #: default logger when none is passed
    _LOGGER: logging.Logger | None = None

    def __init__(
        self,
        engine: Any,
        task_listen_for: Iterable[str] = base.DEFAULT_LISTEN_FOR,
        flow_listen_for: Iterable[str] = base.DEFAULT_LISTEN_FOR,
        retry_listen_for: Iterable[str] = base.DEFAULT_LISTEN_FOR,
        log: Any = None,
        level: int = logging.DEBUG,
    ) -> None:
        super().__init__(
            engine, task_listen_for=task_listen_for, flow_listen_for=flow_listen_for,
            retry_listen_for=retry_listen_for,
        )
        self._logger = next(x for x in (log, self._LOGGER, LOG) if x is not None)
        self._level = level

    def _dump(self, message: str, *args: Any, **kwargs: Any) -> None:
        self._logger.log(self._level, message, *args, **kwargs)


def _make_matcher(task_name: str) -> Any:
    def _task_matcher(node: Any) -> bool:
        return getattr(node.item, "name", None) == task_name and getattr(node.item, "kind", "task") == "task"

    return _task_matcher


class DynamicLoggingListener(base.Listener):
    """Logs transitions, choosing the level by what happened (TaskFlow's messages and levels).

    Flow FAILURE and REVERTED, and task FAILURE, REVERTED, RETRYING and REVERT_FAILURE
    are logged at ``failure_level`` (default ``WARNING``), the rest at ``level``
    (default ``DEBUG``). A task whose result is a Failure is logged with the failure's
    text from :class:`~celeryflow.formatters.FailureFormatter` (and its ``exc_info``
    when the exception was captured in this process).

    Args:
        engine, task_listen_for, flow_listen_for, retry_listen_for: as for
            :class:`~celeryflow.listeners.base.Listener` (default: every event).
        log: the logger (default: the class's ``_LOGGER``, else this module's).
        failure_level: level of failure transitions.
        level: level of the others.
        hide_inputs_outputs_of: task names whose results are not logged.
        fail_formatter: an object with ``format(failure, atom_matcher) -> (exc_info, text)``.
        mask_inputs_keys: input keys shown as ``***``.
        mask_outputs_keys: result keys shown as ``***``.
    """

    #: default logger when none is passed
    _LOGGER: logging.Logger | None = None

    #: states that mean some kind of failure
    _FAILURE_STATES = (states.FAILURE, states.REVERT_FAILURE)

    def __init__(
        self,
        engine: Any,
        task_listen_for: Iterable[str] = base.DEFAULT_LISTEN_FOR,
        flow_listen_for: Iterable[str] = base.DEFAULT_LISTEN_FOR,
        retry_listen_for: Iterable[str] = base.DEFAULT_LISTEN_FOR,
        log: Any = None,
        failure_level: int = logging.WARNING,
        level: int = logging.DEBUG,
        hide_inputs_outputs_of: Iterable[str] = (),
        fail_formatter: Any = None,
        mask_inputs_keys: Iterable[str] = (),
        mask_outputs_keys: Iterable[str] = (),
    ) -> None:
        super().__init__(
            engine, task_listen_for=task_listen_for, flow_listen_for=flow_listen_for,
            retry_listen_for=retry_listen_for,
        )
        self._failure_level = failure_level
        self._level = level
        self._task_log_levels = {
            states.FAILURE: failure_level,
            states.REVERTED: failure_level,
            states.RETRYING: failure_level,
            states.REVERT_FAILURE: failure_level,
        }
        self._flow_log_levels = {states.FAILURE: failure_level, states.REVERTED: failure_level}
        self._hide_inputs_outputs_of = frozenset(hide_inputs_outputs_of)
        self._logger = next(x for x in (log, self._LOGGER, LOG) if x is not None)
        self._fail_formatter = fail_formatter or FailureFormatter(
            engine, hide_inputs_outputs_of=self._hide_inputs_outputs_of, mask_inputs_keys=mask_inputs_keys,
            mask_outputs_keys=mask_outputs_keys,
        )

    def _flow_receiver(self, state: str, details: dict[str, Any]) -> None:
        level = self._flow_log_levels.get(state, self._level)
        self._logger.log(
            level, "Flow '%s' (%s) transitioned into state '%s' from state '%s'",
            details["flow_name"], details["flow_uuid"], state, details.get("old_state"),
        )

    def _task_receiver(self, state: str, details: dict[str, Any]) -> None:
        task_name = details["task_name"]
        task_uuid = details["task_uuid"]
        level = self._task_log_levels.get(state, self._level)
        if "result" not in details or state not in base.FINISH_STATES:
            self._logger.log(
                level, "Task '%s' (%s) transitioned into state '%s' from state '%s'",
                task_name, task_uuid, state, details["old_state"],
            )
            return
        result = details.get("result")
        if isinstance(result, Failure):
            exc_info, fail_details = self._fail_formatter.format(result, _make_matcher(task_name))
            if fail_details:
                self._logger.log(
                    self._failure_level, "Task '%s' (%s) transitioned into state '%s' from state '%s'%s%s",
                    task_name, task_uuid, state, details["old_state"], os.linesep, fail_details, exc_info=exc_info,
                )
            else:
                self._logger.log(
                    self._failure_level, "Task '%s' (%s) transitioned into state '%s' from state '%s'",
                    task_name, task_uuid, state, details["old_state"], exc_info=exc_info,
                )
            return
        show_result = self._logger.isEnabledFor(self._level) or state == states.FAILURE
        if show_result and task_name not in self._hide_inputs_outputs_of:
            self._logger.log(
                level, "Task '%s' (%s) transitioned into state '%s' from state '%s' with result '%s'",
                task_name, task_uuid, state, details["old_state"], result,
            )
        else:
            self._logger.log(
                level, "Task '%s' (%s) transitioned into state '%s' from state '%s'",
                task_name, task_uuid, state, details["old_state"],
            )


__all__ = ["DynamicLoggingListener", "LoggingListener"]
