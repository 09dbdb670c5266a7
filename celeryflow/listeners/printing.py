"""TaskFlow's ``listeners.printing``: :class:`PrintingListener`."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Iterable
from typing import Any

from celeryflow.listeners import base


class PrintingListener(base.DumpingListener):
    """Prints flow and task transitions to stdout (or stderr), TaskFlow's messages word for word.

    Args:
        engine, task_listen_for, flow_listen_for, retry_listen_for: as for
            :class:`~celeryflow.listeners.base.Listener` (default: every event).
        stderr: print to ``sys.stderr`` instead of ``sys.stdout``.
    """

    def __init__(
        self,
        engine: Any,
        task_listen_for: Iterable[str] = base.DEFAULT_LISTEN_FOR,
        flow_listen_for: Iterable[str] = base.DEFAULT_LISTEN_FOR,
        retry_listen_for: Iterable[str] = base.DEFAULT_LISTEN_FOR,
        stderr: bool = False,
    ) -> None:
        super().__init__(
            engine, task_listen_for=task_listen_for, flow_listen_for=flow_listen_for,
            retry_listen_for=retry_listen_for,
        )
        self._stderr = stderr

    def _dump(self, message: str, *args: Any, **kwargs: Any) -> None:
        # the stream is looked up per message, so a redirected sys.stdout is honoured
        out = sys.stderr if self._stderr else sys.stdout
        print(message % args, file=out)
        exc_info = kwargs.get("exc_info")
        if exc_info is not None:
            traceback.print_exception(exc_info[0], exc_info[1], exc_info[2], file=out)


__all__ = ["PrintingListener"]
