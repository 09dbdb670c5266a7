"""TaskFlow's ``listeners.capturing``: :class:`CaptureListener`, mostly for tests."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from celeryflow.listeners import base


def _freeze_it(values: Iterable[str] | None) -> frozenset[str]:
    return frozenset(values) if values else frozenset()


class CaptureListener(base.Listener):
    """Captures transitions into ``values``: ``(kind, state, details)`` tuples by default.

    Args:
        engine, task_listen_for, flow_listen_for, retry_listen_for: as for
            :class:`~celeryflow.listeners.base.Listener` (default: every event).
        capture_flow: capture flow events.
        capture_task: capture task events.
        capture_retry: capture retry events.
        skip_tasks: task names not to capture.
        skip_retries: retry names not to capture.
        skip_flows: flow names not to capture.
        values: a list to append to (default: a new one).
    """

    #: kind of a flow capture
    FLOW = "flow"
    #: kind of a task capture
    TASK = "task"
    #: kind of a retry capture
    RETRY = "retry"

    def __init__(
        self,
        engine: Any,
        task_listen_for: Iterable[str] = base.DEFAULT_LISTEN_FOR,
        flow_listen_for: Iterable[str] = base.DEFAULT_LISTEN_FOR,
        retry_listen_for: Iterable[str] = base.DEFAULT_LISTEN_FOR,
        capture_flow: bool = True,
        capture_task: bool = True,
        capture_retry: bool = True,
        skip_tasks: Iterable[str] | None = None,
        skip_retries: Iterable[str] | None = None,
        skip_flows: Iterable[str] | None = None,
        values: list[Any] | None = None,
    ) -> None:
        super().__init__(
            engine, task_listen_for=task_listen_for, flow_listen_for=flow_listen_for,
            retry_listen_for=retry_listen_for,
        )
        self._capture_flow = capture_flow
        self._capture_task = capture_task
        self._capture_retry = capture_retry
        self._skip_tasks = _freeze_it(skip_tasks)
        self._skip_flows = _freeze_it(skip_flows)
        self._skip_retries = _freeze_it(skip_retries)
        self.values: list[Any] = [] if values is None else values

    @staticmethod
    def _format_capture(kind: str, state: str, details: dict[str, Any]) -> Any:
        """What is saved for one event; override to save something else."""
        return (kind, state, details)

    def _task_receiver(self, state: str, details: dict[str, Any]) -> None:
        if self._capture_task and details["task_name"] not in self._skip_tasks:
            self.values.append(self._format_capture(self.TASK, state, details))

    def _retry_receiver(self, state: str, details: dict[str, Any]) -> None:
        if self._capture_retry and details["retry_name"] not in self._skip_retries:
            self.values.append(self._format_capture(self.RETRY, state, details))

    def _flow_receiver(self, state: str, details: dict[str, Any]) -> None:
        if self._capture_flow and details["flow_name"] not in self._skip_flows:
            self.values.append(self._format_capture(self.FLOW, state, details))


__all__ = ["CaptureListener"]
