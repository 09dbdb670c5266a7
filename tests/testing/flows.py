"""A test flow with effects in a "world" the compensation check can observe: a ledger of bookings.

``shop(broken=True)`` has a ``charge`` whose revert forgets to refund: every engine
invariant holds (it is reverted once, in order), only the ledger shows the payment is
still there. The ledger lives in this process (the embedded default and the in-process
worker run the atoms here); the store names which ledger a run writes to.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

from celeryflow import task
from celeryflow.patterns import graph_flow, linear_flow

_lock = threading.Lock()
LEDGERS: dict[str, dict[str, Any]] = {}


def new_ledger() -> str:
    """A fresh, empty ledger; its id goes in the store as ``ledger``."""
    name = uuid.uuid4().hex
    with _lock:
        LEDGERS[name] = {}
    return name


def snapshot(ledger: str) -> dict[str, Any]:
    """What the ledger holds now (a copy)."""
    with _lock:
        return dict(LEDGERS[ledger])


def clear(ledger: str) -> None:
    """Empty the ledger (the world before any run)."""
    with _lock:
        LEDGERS[ledger].clear()


def _book(ledger: str, key: str, value: Any) -> None:
    with _lock:
        LEDGERS[ledger][key] = value


def _unbook(ledger: str, key: str) -> None:
    with _lock:
        LEDGERS[ledger].pop(key, None)


class Reserve(task.Task):
    default_provides = "seat"

    def execute(self, ledger: str, item: str) -> str:
        _book(ledger, "seat", item)
        return f"seat-{item}"

    def revert(self, ledger: str, **kwargs: Any) -> None:
        _unbook(ledger, "seat")


class Charge(task.Task):
    """Takes a payment; with ``broken=True`` its revert reports success but refunds nothing."""

    default_provides = "payment"

    def __init__(self, broken: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.broken = broken

    def execute(self, ledger: str, seat: str, amount: int) -> str:
        _book(ledger, "payment", amount)
        return f"pay-{seat}"

    def revert(self, ledger: str, **kwargs: Any) -> None:
        if self.broken:
            return  # the bug: forgets to refund
        _unbook(ledger, "payment")


class Ship(task.Task):
    default_provides = "parcel"

    def execute(self, ledger: str, payment: str) -> str:
        _book(ledger, "parcel", payment)
        return f"parcel-{payment}"

    def revert(self, ledger: str, **kwargs: Any) -> None:
        _unbook(ledger, "parcel")


class Email(task.Task):
    """Sends a mail: nothing to undo."""

    def execute(self, ledger: str, seat: str) -> str:
        return f"mail about {seat}"


def shop(broken: bool = False) -> linear_flow.Flow:
    """reserve → charge → ship (linear)."""
    return linear_flow.Flow("shop").add(Reserve("reserve"), Charge(broken, name="charge"), Ship("ship"))


def shop_graph(broken: bool = False) -> graph_flow.Flow:
    """reserve → (charge → ship) ∥ email: compensation in reverse dependency order across branches."""
    return graph_flow.Flow("shop-graph").add(Reserve("reserve"), Charge(broken, name="charge"), Ship("ship"),
                                             Email("email", provides="mail"))
