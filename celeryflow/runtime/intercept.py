"""Process-local interceptors around the atom calls a worker makes (``celeryflow.testing``'s injection).

A worker calls no interceptor unless one was added in *its own process* with :func:`add`:
nothing a message or a logbook row says can make an atom fail on purpose. The test
helpers add one in the test process, where the embedded default and the in-process
worker (``celery.contrib.testing.worker.start_worker``) run the atoms.

Three points of one delivery (see :func:`celeryflow.runtime.tasks.run_step`):

* ``admit(flow, atom, mode)`` before the claim: False drops the message, as if the
  process that took it died with it (the atom stays queued; a resume sends it again).
* ``call(flow, atom, mode, proceed)`` around the user's ``execute`` / ``revert``: it may
  raise an exception (the atom's failure, as if its code raised) or :class:`Crash`
  (the process died here: nothing about this call is recorded, the atom stays claimed).
* ``publish(flow, atom, mode)`` once the outcome is committed, before the atoms it made
  ready are sent: False drops them (the process died between the two).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any, Protocol


class Crash(BaseException):
    """Raised by an interceptor: the worker process "died" at this point of the delivery.

    A BaseException that is not an Exception, so the atom-call machinery does not record
    it as the atom's failure; :func:`~celeryflow.runtime.tasks.run_step` drops the delivery.
    """


class Interceptor(Protocol):
    """What :func:`add` takes: the three points of a delivery (any may be a no-op)."""

    def admit(self, flow_uuid: str, name: str, mode: str) -> bool: ...

    def call(self, flow_uuid: str, name: str, mode: str, proceed: Callable[[], Any]) -> Any: ...

    def publish(self, flow_uuid: str, name: str, mode: str) -> bool: ...


_lock = threading.Lock()
_interceptors: tuple[Interceptor, ...] = ()


def add(interceptor: Interceptor) -> None:
    """Call ``interceptor`` around every atom this process runs (until :func:`remove`)."""
    global _interceptors
    with _lock:
        if interceptor not in _interceptors:
            _interceptors = (*_interceptors, interceptor)


def remove(interceptor: Interceptor) -> None:
    """Stop calling ``interceptor``."""
    global _interceptors
    with _lock:
        _interceptors = tuple(i for i in _interceptors if i is not interceptor)


def active() -> bool:
    """Whether any interceptor is installed (the worker's fast path checks this first)."""
    return bool(_interceptors)


def admit(flow_uuid: str, name: str, mode: str) -> bool:
    return all(i.admit(flow_uuid, name, mode) for i in _interceptors)


def call(flow_uuid: str, name: str, mode: str, proceed: Callable[[], Any]) -> Any:
    """Run ``proceed`` (the user's call) through every interceptor, the first added outermost."""
    wrapped = proceed
    for interceptor in reversed(_interceptors):
        wrapped = functools.partial(interceptor.call, flow_uuid, name, mode, wrapped)
    return wrapped()


def publish(flow_uuid: str, name: str, mode: str) -> bool:
    return all(i.publish(flow_uuid, name, mode) for i in _interceptors)


__all__ = ["Crash", "Interceptor", "active", "add", "admit", "call", "publish", "remove"]
