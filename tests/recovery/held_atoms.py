"""Flow factories for tests/recovery/test_maybe_executed.py (workers import this module too)."""

from __future__ import annotations

from celeryflow import registry
from celeryflow.patterns import unordered_flow
from tests.recovery.atoms import Work


@registry.register
def held_pair(trace: str, hold_a: str, hold_b: str) -> unordered_flow.Flow:
    """a and b side by side, each held on its gate file; b then fails."""
    return unordered_flow.Flow("held-pair").add(
        Work("a", trace, hold=hold_a), Work("b", trace, hold=hold_b, fail=True),
    )
