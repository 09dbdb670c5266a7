"""The blocking conductor: one job at a time, in the thread that calls ``run()``."""

from __future__ import annotations

import logging

from celeryflow.conductors.base import Conductor

LOG = logging.getLogger(__name__)


class BlockingConductor(Conductor):
    """Claims a job, runs its flow to the end, settles it, then looks for the next (highest priority first)."""

    def _run(self, max_dispatches: int | None) -> int:
        dispatched = 0
        while not self._stop.is_set():
            if max_dispatches is not None and dispatched >= max_dispatches:
                break
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
            self._dispatch(job)
        return dispatched


__all__ = ["BlockingConductor"]
