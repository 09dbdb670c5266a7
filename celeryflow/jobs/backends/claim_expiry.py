"""How long jobboard claims live: the default, and parsing the ``claim_expiry``/``expiry`` settings."""

from __future__ import annotations

import time
from typing import Any

from celeryflow.exceptions import ConfigurationError

#: seconds a claim lives unless its owner extends it.
DEFAULT_CLAIM_EXPIRY = 60.0


def claim_expiry_of(value: Any, what: str = "claim_expiry") -> float | None:
    """Seconds as a float, ``None`` for "never expires" (0, negative, False). Raises ConfigurationError."""
    if value is None:
        return DEFAULT_CLAIM_EXPIRY
    if value is False:
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{what} must be a number of seconds (0: never expire), not {value!r}") from None
    return seconds if seconds > 0 else None


def now_ms() -> int:
    return int(time.time() * 1000)


__all__ = ["DEFAULT_CLAIM_EXPIRY", "claim_expiry_of", "now_ms"]
