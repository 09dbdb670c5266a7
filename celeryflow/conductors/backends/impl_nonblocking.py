"""The non-blocking conductor: up to ``max_simultaneous_jobs`` jobs in flight, each in a pool thread.

A job's flow runs on the Celery workers; the conductor's thread only starts it,
follows it in the logbook and settles the job, so a small pool follows many flows.
"""

from __future__ import annotations

import logging
from concurrent import futures
from typing import Any

from celeryflow.conductors.base import Conductor
from celeryflow.exceptions import ConfigurationError

LOG = logging.getLogger(__name__)

DEFAULT_MAX_SIMULTANEOUS_JOBS = 4


class NonBlockingConductor(Conductor):
    """Like the blocking conductor, with a bounded pool of in-flight jobs.

    Args:
        max_simultaneous_jobs: how many jobs run at once (default 4).
        (others as :class:`~celeryflow.conductors.base.Conductor`)
    """

    def __init__(self, *args: Any, max_simultaneous_jobs: int = DEFAULT_MAX_SIMULTANEOUS_JOBS, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        try:
            limit = int(max_simultaneous_jobs)
        except (TypeError, ValueError):
            limit = 0
        if limit < 1:
            raise ConfigurationError(f"max_simultaneous_jobs must be a positive integer, not {max_simultaneous_jobs!r}")
        self.max_simultaneous_jobs = limit

    def _run(self, max_dispatches: int | None) -> int:
        dispatched = 0
        inflight: set[futures.Future[str]] = set()
        pool = futures.ThreadPoolExecutor(self.max_simultaneous_jobs, thread_name_prefix=f"conductor-{self.name}")
        try:
            while not self._stop.is_set():
                if max_dispatches is not None and dispatched >= max_dispatches:
                    break
                inflight = {f for f in inflight if not f.done()}
                if len(inflight) >= self.max_simultaneous_jobs:
                    futures.wait(inflight, timeout=self.wait_timeout, return_when=futures.FIRST_COMPLETED)
                    continue
                try:
                    job = self._claim_next()
                except Exception:
                    LOG.warning("conductor %s: reading the jobboard failed", self.name, exc_info=True)
                    self._stop.wait(self.wait_timeout)
                    continue
                if job is None:
                    self._idle()
                    continue
                dispatched += 1
                inflight.add(pool.submit(self._dispatch, job))
        finally:
            futures.wait(inflight)  # every claimed job is settled before run() returns
            pool.shutdown(wait=True)
        return dispatched


__all__ = ["DEFAULT_MAX_SIMULTANEOUS_JOBS", "NonBlockingConductor"]
