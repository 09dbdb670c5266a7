"""The order flow: reserve stock, charge the card, confirm. Atoms update the Order row."""

from typing import Any

from celeryflow import registry, task
from celeryflow.patterns import linear_flow


class PaymentDeclined(RuntimeError):
    pass


class ReserveStock(task.Task):
    default_provides = "reservation"

    def execute(self, order_id: int) -> str:
        from shop.models import Order

        Order.objects.filter(pk=order_id).update(status="reserved")
        return f"res-{order_id}"

    def revert(self, order_id: int, result: Any, flow_failures: Any, **kwargs: Any) -> None:
        from shop.models import Order

        Order.objects.filter(pk=order_id).update(status="cancelled")


class ChargeCard(task.Task):
    default_provides = "charge"

    def execute(self, order_id: int, amount: int, reservation: str, decline: bool = False) -> str:
        if decline:
            raise PaymentDeclined(f"card declined for order {order_id}")
        return f"ch-{order_id}-{amount}"


class ConfirmOrder(task.Task):
    default_provides = "confirmed"

    def execute(self, order_id: int, charge: str) -> bool:
        from shop.models import Order

        Order.objects.filter(pk=order_id).update(status="confirmed", charge=charge)
        return True


@registry.register
def order_flow() -> linear_flow.Flow:
    return linear_flow.Flow("place-order").add(ReserveStock("reserve"), ChargeCard("charge"), ConfirmOrder("confirm"))
