"""Conductors (TaskFlow's ``taskflow.conductors``): see :mod:`celeryflow.conductors.backends`."""

from __future__ import annotations

from celeryflow.conductors.base import JOB_ABANDONED, JOB_CONSUMED, JOB_TRASHED, Conductor

__all__ = ["JOB_ABANDONED", "JOB_CONSUMED", "JOB_TRASHED", "Conductor"]
