"""Deployments sharing one logbook database: each flow belongs to one namespace.

A deployment is a broker, its workers and its conductors. Two deployments may keep
their logbooks in one database (one PostgreSQL schema): each names itself with
``CELERYFLOW_NAMESPACE`` (``app.conf.celeryflow_namespace``; default ``"default"``),
every flow it starts is stamped with that name (``celeryflow_flows.namespace``), and
its sweeps and job conductors re-drive only flows of their own namespace: one
deployment's sweep never resends another's flows over its own broker, to workers
that do not have their atoms.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select

from celeryflow.exceptions import ConfigurationError
from celeryflow.persistence.tables import DEFAULT_NAMESPACE, NAMESPACE_LEN, FlowRow

if TYPE_CHECKING:
    from celeryflow.persistence.backends.base import Backend

__all__ = ["DEFAULT_NAMESPACE", "check", "of_flow"]


def check(namespace: str | None) -> str:
    """``namespace`` validated (``None`` or empty: the default).

    Raises:
        ConfigurationError: too long for the column, or not printable text.
    """
    value = (namespace or "").strip() or DEFAULT_NAMESPACE
    if len(value) > NAMESPACE_LEN or not value.isprintable():
        raise ConfigurationError(
            f"CELERYFLOW_NAMESPACE / celeryflow_namespace must be printable text of at most {NAMESPACE_LEN} "
            f"characters, got {namespace!r}"
        )
    return value


def of_flow(backend: Backend, flow_uuid: str) -> str | None:
    """The namespace of a flow (``None``: no such flow)."""
    return backend.run(
        lambda s: s.scalar(select(FlowRow.namespace).where(FlowRow.uuid == flow_uuid)), readonly=True
    )
