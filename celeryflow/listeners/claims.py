"""TaskFlow's ``listeners.claims``: :class:`CheckingClaimListener` for conductors."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from celeryflow import states
from celeryflow.exceptions import CeleryflowError, JobFailure, NotFound
from celeryflow.listeners import base

LOG = logging.getLogger(__name__)


class CheckingClaimListener(base.Listener):
    """On every flow or task event, checks the job is still claimed by ``owner``.

    When the claim is lost (the job is unclaimed, owned by someone else, or gone),
    ``on_job_loss(engine, state, details)`` is called; the default suspends the engine.

    Args:
        engine: the engine running the job's flow.
        job: the claimed job.
        board: the jobboard it was claimed on.
        owner: the claimant's name.
        on_job_loss: the handler (default: suspend the engine).

    Raises:
        ValueError: ``on_job_loss`` is not callable.
    """

    def __init__(
        self, engine: Any, job: Any, board: Any, owner: str,
        on_job_loss: Callable[[Any, str, dict[str, Any]], Any] | None = None,
    ) -> None:
        super().__init__(engine)
        self._job = job
        self._board = board
        self._owner = owner
        if on_job_loss is None:
            self._on_job_loss: Callable[[Any, str, dict[str, Any]], Any] = self._suspend_engine_on_loss
        elif not callable(on_job_loss):
            raise ValueError("Custom 'on_job_loss' handler must be callable")
        else:
            self._on_job_loss = on_job_loss

    def _suspend_engine_on_loss(self, engine: Any, state: str, details: dict[str, Any]) -> None:
        try:
            engine.suspend()
        except CeleryflowError as e:
            LOG.warning("Failed suspending engine '%s', (previously owned by '%s'):%s%s",
                        engine, self._owner, os.linesep, e.pformat())

    def _flow_receiver(self, state: str, details: dict[str, Any]) -> None:
        self._claim_checker(state, details)

    def _task_receiver(self, state: str, details: dict[str, Any]) -> None:
        self._claim_checker(state, details)

    def _has_been_lost(self) -> bool:
        try:
            job_state = self._job.state
            job_owner = self._board.find_owner(self._job)
        except (NotFound, JobFailure):
            return True
        return job_state == states.UNCLAIMED or self._owner != job_owner

    def _claim_checker(self, state: str, details: dict[str, Any]) -> None:
        if not self._has_been_lost():
            LOG.debug("Job '%s' is still claimed (actively owned by '%s')", self._job, self._owner)
        else:
            LOG.warning("Job '%s' has lost its claim (previously owned by '%s')", self._job, self._owner)
            self._on_job_loss(self._engine, state, details)


__all__ = ["CheckingClaimListener"]
