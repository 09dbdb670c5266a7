"""Celery task options per atom (issue #12, item 8): queue, routing, time limits, priority, expiry.

An atom class (or one atom) names the Celery options of the message that runs it, and
separately of the message that reverts it::

    class Resize(task.Task):
        celery_options = {"queue": "gpu", "soft_time_limit": 60}
        revert_celery_options = {"soft_time_limit": 10}

    flow.add(Resize().with_celery_options(priority=9))

Flow-level defaults come from the engine options ``celery_options=`` and
``revert_celery_options=`` (``engines.load(flow, celery_options={"queue": "flows"})``);
an atom's own options win. They are compiled into the flow's compilation, which is
stored in the logbook, so every dispatch of the atom — the first, a chain step, a
retry round, a resume, the sweep's re-send — carries them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from celeryflow.exceptions import ConfigurationError

#: Celery's per-message options an atom may set (``apply_async`` keywords)
ALLOWED: frozenset[str] = frozenset(
    {"queue", "routing_key", "exchange", "priority", "expires", "soft_time_limit", "time_limit"}
)
_WHY_NOT = {
    "rate_limit": "Celery applies rate limits per task type on each worker, not per message: route the atom "
                  "to its own queue (celery_options={'queue': ...}) and limit that queue's workers instead",
    "countdown": "celeryflow schedules atoms itself (retry countdowns come from the retry controller)",
    "eta": "celeryflow schedules atoms itself (retry countdowns come from the retry controller)",
    "serializer": "celeryflow's messages are always JSON",
}


def check(options: Mapping[str, Any], who: str) -> dict[str, Any]:
    """Validated copy of ``options``: only :data:`ALLOWED` keys, with JSON-friendly values."""
    if not isinstance(options, Mapping):
        raise ConfigurationError(f"{who}: Celery options must be a dict, not {type(options).__name__}")
    out: dict[str, Any] = {}
    for key, value in options.items():
        if key in _WHY_NOT:
            raise ConfigurationError(f"{who}: the Celery option {key!r} cannot be set per atom: {_WHY_NOT[key]}")
        if key not in ALLOWED:
            raise ConfigurationError(
                f"{who}: unknown Celery option {key!r}; an atom may set {', '.join(sorted(ALLOWED))}"
            )
        if key in ("soft_time_limit", "time_limit", "expires", "priority"):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigurationError(f"{who}: {key} must be a non-negative number (seconds), not {value!r}")
        elif not isinstance(value, str):
            raise ConfigurationError(f"{who}: {key} must be a string, not {value!r}")
        out[key] = value
    return out
