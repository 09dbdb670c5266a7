"""Atoms and flow factories shared by the ecosystem tests (Flower, Django, Flask, CLI).

Separate worker processes import this module (``CELERYFLOW_IMPORTS=tests.contrib.atoms``);
everything is a module-level class or a registered factory with JSON arguments.
``api_token`` is a secret store value: tests check it never reaches a Celery message.
"""

from __future__ import annotations

from typing import Any

from celeryflow import registry, task
from celeryflow.patterns import graph_flow, linear_flow


class PaymentDeclined(RuntimeError):
    """The failure the order flow injects on demand."""


class ReserveStock(task.Task):
    default_provides = "reservation"

    def execute(self, order_id: str, api_token: str) -> str:
        assert api_token, "the token is read from the logbook store"
        return f"res-{order_id}"

    def revert(self, order_id: str, result: Any, flow_failures: Any, **kwargs: Any) -> None:
        pass


class ChargeCard(task.Task):
    default_provides = "charge"

    def execute(self, order_id: str, amount: int, reservation: str, decline: bool = False) -> str:
        if decline:
            raise PaymentDeclined(f"card declined for order {order_id}")
        return f"ch-{order_id}-{amount}"

    def revert(self, order_id: str, result: Any, flow_failures: Any, **kwargs: Any) -> None:
        pass


class Notify(task.Task):
    default_provides = "notified"

    def execute(self, reservation: str, charge: str) -> bool:
        return True


@registry.register
def order_flow() -> linear_flow.Flow:
    """reserve, then charge (it needs the reservation), then notify: a graph flow inside a linear flow."""
    prepare = graph_flow.Flow("prepare").add(ReserveStock("reserve_stock"), ChargeCard("charge_card"))
    return linear_flow.Flow("place-order").add(prepare, Notify("notify"))


def order_store(order_id: str, *, decline: bool = False, amount: int = 42) -> dict[str, Any]:
    return {"order_id": order_id, "amount": amount, "decline": decline, "api_token": SECRET}


#: a store value that must never appear in a Celery message (Flower, logs).
SECRET = "tok-s3cr3t-9f8e7d"


class Nap(task.Task):
    """Sleeps ``seconds`` (for tests that need a flow caught running)."""

    def execute(self, seconds: float = 0.0) -> float:
        import time

        time.sleep(seconds)
        return seconds


@registry.register
def nap_flow(count: int = 2) -> linear_flow.Flow:
    """``count`` naps in a row: provides nap_0 … nap_{count-1}."""
    return linear_flow.Flow("naps").add(*(Nap(f"nap_{i}", provides=f"nap_{i}") for i in range(count)))
