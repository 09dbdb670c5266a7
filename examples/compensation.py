"""Failure and compensation: book a trip; the payment fails; what was booked is undone.

    python examples/compensation.py

Each task can ``revert``. When ``charge_card`` fails, celeryflow reverts every task that
executed, in reverse order (the failed one too), then ``run()`` re-raises the original
exception. The logbook keeps the whole story: ``celeryflow flows show <id>``.
"""

from typing import Any

from celeryflow import engines, states, task
from celeryflow.patterns import linear_flow


class CardDeclined(Exception):
    pass


class BookFlight(task.Task):
    default_provides = "flight"

    def execute(self, traveller: str) -> str:
        print(f"  booked flight for {traveller}")
        return "FL-123"

    def revert(self, traveller: str, result: Any, flow_failures: Any, **kwargs: Any) -> None:
        print(f"  cancelled flight {result}")


class BookHotel(task.Task):
    default_provides = "hotel"

    def execute(self, traveller: str) -> str:
        print(f"  booked hotel for {traveller}")
        return "HT-456"

    def revert(self, traveller: str, result: Any, flow_failures: Any, **kwargs: Any) -> None:
        print(f"  cancelled hotel {result}")


class ChargeCard(task.Task):
    def execute(self, flight: str, hotel: str, card: str) -> None:
        print(f"  charging card {card[-4:]} for {flight} + {hotel}")
        raise CardDeclined("insufficient funds")

    def revert(self, *args: Any, **kwargs: Any) -> None:
        print("  nothing was charged")


def main() -> None:
    flow = linear_flow.Flow("book-trip").add(BookFlight(), BookHotel(), ChargeCard())
    engine = engines.load(flow, store={"traveller": "Ada", "card": "4111111111111111"})
    try:
        engine.run(timeout=60)
    except CardDeclined as exc:
        print(f"run() re-raised: {type(exc).__name__}: {exc}")
    else:
        raise SystemExit("expected the payment to fail")
    state = engine.storage.get_flow_state()
    print(f"flow {engine.flow_uuid}: {state}")
    assert state == states.REVERTED
    for name in ("BookFlight", "BookHotel", "ChargeCard"):
        atom = next(n for n in engine.compile().order if n.endswith(name))
        assert engine.storage.get_atom_state(atom) == states.REVERTED


if __name__ == "__main__":
    main()
