"""The jobs a conductor is dispatching, and the thread that keeps their claims alive.

While a job runs, the keeper extends its claim every ``claim_expiry / 3`` seconds:
a live conductor keeps its jobs, a dead one loses them after ``claim_expiry`` and
another conductor takes over. A claim the board refuses to extend marks the job
lost, which stops the conductor following its flow.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from celeryflow.exceptions import JobFailure, NotFound

if TYPE_CHECKING:
    from celeryflow.engines.engine import CeleryEngine
    from celeryflow.jobs.backends.base import JobBoard
    from celeryflow.jobs.job import Job

# the conductor's own logger: its claim warnings stay where they were before this module was split off
LOG = logging.getLogger("celeryflow.conductors.base")


class RunningJob:
    """A job being dispatched: its engines, and whether its claim was lost."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.engines: list[CeleryEngine] = []
        self.lost = threading.Event()
        self.lost_reason = ""
        #: the job was abandoned because something failed (database, broker): back off before the next
        self.errored = False


class ClaimKeeper:
    """Extends the claims of a conductor's running jobs from a daemon thread.

    Args:
        owner: the conductor's name (the owner of its claims).
        jobboard: the board the claims are on.
        expiry: the ``expiry`` option passed to ``extend_claim`` (``None``: the board's).
        running: returns the jobs being dispatched right now.
    """

    def __init__(
        self, owner: str, jobboard: JobBoard, expiry: float | None, running: Callable[[], list[RunningJob]]
    ) -> None:
        self.owner = owner
        self.jobboard = jobboard
        self.expiry = expiry
        self.running = running
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self, expiry: float | None) -> None:
        """Start extending every ``expiry / 3`` seconds (``expiry`` None: claims never expire, do nothing)."""
        if expiry is None:
            return
        self._stop.clear()
        interval = max(0.05, expiry / 3.0)
        self._thread = threading.Thread(
            target=self._keep_claims, args=(interval,), name=f"conductor-{self.owner}-claims", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread (waiting up to 10 s for it)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self._thread = None

    def _keep_claims(self, interval: float) -> None:
        while not self._stop.wait(interval):
            for item in self.running():
                if item.lost.is_set():
                    continue
                try:
                    self.jobboard.extend_claim(item.job, self.owner, expiry=self.expiry)
                except (JobFailure, NotFound) as exc:
                    item.lost_reason = f"the claim was lost: {exc}"
                    item.lost.set()
                    LOG.warning("conductor %s lost its claim on job %s: %s", self.owner, item.job.uuid, exc)
                except Exception:  # the board is briefly unreachable: try again next tick
                    LOG.warning("conductor %s could not extend its claim on job %s", self.owner, item.job.uuid,
                                exc_info=True)


__all__ = ["ClaimKeeper", "RunningJob"]
