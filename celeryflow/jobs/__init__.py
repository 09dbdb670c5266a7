"""Jobs and jobboards (TaskFlow's ``taskflow.jobs``): see :mod:`celeryflow.jobs.backends`."""

from __future__ import annotations

from celeryflow.jobs.job import Job, JobPriority, TrashedJob

__all__ = ["Job", "JobPriority", "TrashedJob"]
