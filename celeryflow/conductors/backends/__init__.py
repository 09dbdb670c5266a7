"""Conductors (TaskFlow's ``taskflow.conductors.backends``): ``fetch(kind, name, jobboard)``.

::

    from celeryflow.conductors import backends as conductor_backends

    conductor = conductor_backends.fetch("blocking", "conductor-1", board)
    conductor.run()                    # until stop(); run(max_dispatches=N) returns after N jobs

Kinds: ``"blocking"`` (one job at a time) and ``"nonblocking"`` (a bounded pool:
``max_simultaneous_jobs``, alias ``concurrency``). Options: ``wait_timeout``,
``claim_expiry``, ``engine_options``. See ``docs/jobs.md``.
"""

from __future__ import annotations

from typing import Any

from celeryflow.conductors.backends.impl_blocking import BlockingConductor
from celeryflow.conductors.backends.impl_nonblocking import NonBlockingConductor
from celeryflow.conductors.base import Conductor
from celeryflow.exceptions import ConfigurationError

CONDUCTORS: dict[str, type[Conductor]] = {
    "blocking": BlockingConductor,
    "nonblocking": NonBlockingConductor,
    "non-blocking": NonBlockingConductor,
}
_COMMON = ("wait_timeout", "claim_expiry", "engine_options")


def fetch(
    kind: str,
    name: str,
    jobboard: Any,
    persistence: Any = None,
    engine: str = "celery",
    app: Any = None,
    **options: Any,
) -> Conductor:
    """A conductor of ``kind`` named ``name`` working ``jobboard``.

    Args:
        kind: ``"blocking"`` or ``"nonblocking"``.
        name: the owner name of its claims: unique among running conductors.
        jobboard: a board from ``celeryflow.jobs.backends.fetch``.
        persistence: the logbook (URL or backend) of the jobs' flows (default: the board's).
        engine: ``"celery"``.
        app: the Celery app flows run on (default: the installed app, else the embedded one).
        **options: ``wait_timeout``, ``claim_expiry``, ``engine_options``; nonblocking also
            ``max_simultaneous_jobs`` (or ``concurrency``).

    Raises:
        ConfigurationError: unknown kind or option.
    """
    cls = CONDUCTORS.get(str(kind).lower())
    if cls is None:
        raise ConfigurationError(f"Unknown conductor {kind!r}: use 'blocking' or 'nonblocking'")
    if "concurrency" in options:
        options.setdefault("max_simultaneous_jobs", options.pop("concurrency"))
    allowed = set(_COMMON) | ({"max_simultaneous_jobs"} if cls is NonBlockingConductor else set())
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ConfigurationError(f"Unknown option(s) {', '.join(unknown)} for a {kind} conductor; "
                                 f"known: {', '.join(sorted(allowed))}")
    return cls(name, jobboard, persistence=persistence, engine=engine, app=app, **options)


__all__ = ["CONDUCTORS", "BlockingConductor", "NonBlockingConductor", "fetch"]
